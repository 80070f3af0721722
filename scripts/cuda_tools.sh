#!/usr/bin/env bash
# Obtains NVIDIA's ptxas and cuobjdump (with nvdisasm, which cuobjdump -sass runs) without a GPU, a CUDA install or root, and prints the directory
# that holds them. They come from Debian's non-free nvidia-cuda-toolkit package (trixie's 12.4, which
# assembles sm_90a and wgmma; bookworm's 11.8 if trixie cannot be reached), fetched with `apt-get
# download` through a temporary source list and unpacked with `dpkg -x`: the machine's apt
# configuration is read, never changed. Only the three binaries (80 MB; they need nothing but libc) are
# kept, in a cache outside the repository:
#     ${MT_CUDA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/managedtensor/cuda-tools}/<version>/
#
# The Debian mirror is the one this machine's apt already uses (the first deb822 or one-line source
# whose suite is a Debian release, security and updates suites aside), or $MT_DEBIAN_MIRROR.
# Nothing in this repository names a package host.
#
# Usage: scripts/cuda_tools.sh            -> prints the directory; exit 1 (with the reason on stderr) when
#                                             neither release could be fetched
#        MT_PTXAS=$(scripts/cuda_tools.sh)/ptxas dotnet test ...
# Cost: one download of ~85 MB and ~10 s the first time; a directory test afterwards.
set -euo pipefail

cache="${MT_CUDA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/managedtensor/cuda-tools}"

# A cached copy: the newest version present.
for dir in $(ls -d "$cache"/*/ 2>/dev/null | sort -rV); do
    if [ -x "$dir/ptxas" ] && [ -x "$dir/cuobjdump" ] && [ -x "$dir/nvdisasm" ]; then
        echo "${dir%/}"
        exit 0
    fi
done

command -v apt-get >/dev/null && command -v dpkg >/dev/null || { echo "cuda_tools.sh: needs apt-get and dpkg (a Debian-family machine)" >&2; exit 1; }

# The mirror and its keyring from the machine's own sources: deb822 stanzas (URIs/Suites/Signed-By) in
# sources.list.d/*.sources, then one-line entries in sources.list and sources.list.d/*.list.
find_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '
            function flush() {
                if (uri != "" && enabled != "no" && suites ~ /(^| )(bookworm|trixie|forky|sid|stable|testing|unstable)( |$)/) {
                    print uri " " (key == "" ? "-" : key); found = 1; exit
                }
                uri = ""; suites = ""; key = ""; enabled = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { $1 = ""; suites = $0 }
            /^Signed-By:/ { key = $2 }
            /^Enabled:/ { enabled = $2 }
            END { if (!found) flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" {
                key = "-"; i = 2
                if ($2 ~ /^\[/) { while ($i !~ /\]$/) { if ($i ~ /signed-by=/) { key = $i; sub(/.*signed-by=/, "", key); sub(/\]$/, "", key) } i++ }
                                  if ($i ~ /signed-by=/) { key = $i; sub(/.*signed-by=/, "", key); sub(/\]$/, "", key) } i++ }
                if ($(i + 1) ~ /^(bookworm|trixie|forky|sid|stable|testing|unstable)$/) { print $i " " key; exit }
            }' "$f"
    done
}

if [ -n "${MT_DEBIAN_MIRROR:-}" ]; then
    mirror="$MT_DEBIAN_MIRROR"; keyring="-"
else
    read -r mirror keyring < <(find_mirror | head -1) || true
fi
if [ -z "${mirror:-}" ]; then
    echo "cuda_tools.sh: no Debian mirror in this machine's apt sources (set MT_DEBIAN_MIRROR to one)" >&2
    exit 1
fi
[ "$keyring" != "-" ] && [ -f "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || { echo "cuda_tools.sh: no Debian archive keyring ($keyring) to check the packages with" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial"
fetch() { # $1 = suite; leaves the .deb in $work
    echo "deb [signed-by=$keyring] $mirror $1 non-free" > "$work/sources.list"
    local apt=(-q -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work" -o "Dir::Cache::archives=$work/archives"
        -o Dir::State::status=/dev/null -o Debug::NoLocking=1 -o APT::Sandbox::User=root -o APT::Architecture=amd64)
    apt-get "${apt[@]}" update >&2 && (cd "$work" && apt-get "${apt[@]}" download nvidia-cuda-toolkit >&2)
}
suite=""
for s in trixie bookworm; do
    if fetch "$s"; then suite=$s; break; fi
    echo "cuda_tools.sh: nvidia-cuda-toolkit from $s could not be fetched" >&2
done
[ -n "$suite" ] || exit 1

deb=$(ls "$work"/nvidia-cuda-toolkit_*.deb)
version=$(dpkg-deb -f "$deb" Version | sed 's/[~+].*//')   # 12.4.131~12.4.1-2 -> 12.4.131
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" ./usr/bin/ptxas ./usr/bin/cuobjdump ./usr/bin/nvdisasm
mkdir -p "$cache/$version.tmp"
mv "$work/usr/bin/ptxas" "$work/usr/bin/cuobjdump" "$work/usr/bin/nvdisasm" "$cache/$version.tmp/"
rm -rf "${cache:?}/$version" && mv "$cache/$version.tmp" "$cache/$version"
"$cache/$version/ptxas" --version >&2
echo "$cache/$version"
