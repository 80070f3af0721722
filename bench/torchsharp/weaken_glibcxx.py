"""Marks one symbol-version requirement of an ELF shared library as weak, in place.

TorchSharp 0.107's libLibTorchSharp.so was linked against GCC 13's libstdc++ and asks for GLIBCXX_3.4.32
for one symbol, std::ios_base_library_init(), which GCC 13's <iostream> only references (to pull in the
stream initializer) and never calls. Debian 12's libstdc++ (GCC 12) stops at GLIBCXX_3.4.30, so the
dynamic loader refuses the library ("version `GLIBCXX_3.4.32' not found"). A requirement flagged
VER_FLG_WEAK is only checked softly (glibc's _dl_check_map_versions skips weak ones), so the library loads
and everything it actually calls resolves against GCC 12's runtime. This patches the benchmark's own copy
in bench/torchsharp/bin, never the NuGet cache.

Usage: python3 weaken_glibcxx.py LIB.so [VERSION]   (VERSION defaults to GLIBCXX_3.4.32)
"""
import struct
import sys

SHT_GNU_VERNEED = 0x6FFFFFFE
VER_FLG_WEAK = 0x2


def weaken(path, version):
    data = bytearray(open(path, "rb").read())
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "expected a little-endian ELF64 file"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    changed = 0
    for name, kind, flags, addr, offset, size, link, info, align, entsize in sections:
        if kind != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][4]  # the .dynstr the version names live in
        need = offset
        for _ in range(info):  # info = number of Verneed entries
            vn_version, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", data, need)
            aux = need + vn_aux
            for _ in range(vn_cnt):
                vna_hash, vna_flags, vna_other, vna_name, vna_next = struct.unpack_from("<IHHII", data, aux)
                end = data.index(b"\0", strtab + vna_name)
                if data[strtab + vna_name:end].decode() == version and not vna_flags & VER_FLG_WEAK:
                    struct.pack_into("<H", data, aux + 4, vna_flags | VER_FLG_WEAK)
                    changed += 1
                aux += vna_next
            need += vn_next
    if changed:
        open(path, "wb").write(data)
    print(f"{path}: {version} {'weakened' if changed else 'already weak or not required'}")


if __name__ == "__main__":
    weaken(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "GLIBCXX_3.4.32")
