using System.Text.RegularExpressions;

namespace ManagedTensor.Tests.Gpu.Gemm;

/// <summary>
/// Hopper's TMA box load and wgmma.mma_async (bf16, K-major operands, 128-byte swizzle) as the CUDA driver API and the PTX
/// ISA define them, emulated on a byte image of shared memory, so that what the wgmma kernel writes into its descriptors
/// and tile addresses can be checked without an H100:
/// - the 128-byte swizzle is a function of the shared address: bits 4-6 (the 16-byte chunk within a 128-byte line) are
///   XORed with bits 7-9 (the line within a 1024-byte atom); TMA writes with it and wgmma reads with it;
/// - a matrix descriptor (PTX ISA 8.x, "Matrix Descriptor Format") holds the start address / 16 in bits 0-13, the leading
///   byte offset / 16 in bits 16-29, the stride byte offset / 16 in bits 32-45, the base offset in bits 49-51 and the
///   swizzle mode in bits 62-63 (1 = 128 bytes);
/// - a K-major swizzled operand is 8-row x 128-byte atoms: row r, element k of an instruction's 16 is at
///   start + (r / 8) SBO + (r % 8) 128 + 2 k before the swizzle (the leading offset is unused while the 16 k stay inside
///   one 128-byte line, which <see cref="Address"/> asserts);
/// - accumulator register i of lane l of warp w of the warpgroup holds D[16 w + l / 4 + 8 ((i % 4) / 2)][8 (i / 4) + 2 (l % 4) + i % 2].
/// </summary>
internal static class WgmmaEmulator
{
    public readonly record struct Descriptor(int Start, int LeadingOffset, int StrideOffset, int BaseOffset, int Swizzle);

    public static Descriptor Decode(ulong d) => new(
        (int)(d & 0x3FFF) << 4, (int)((d >> 16) & 0x3FFF) << 4, (int)((d >> 32) & 0x3FFF) << 4, (int)((d >> 49) & 7), (int)(d >> 62));

    /// <summary>The 128-byte swizzle of a shared byte address.</summary>
    public static int Swizzle128(int address) => address ^ (((address >> 7) & 7) << 4);

    /// <summary>
    /// A TMA box (64 k x <paramref name="boxRows"/> rows) of a row-major bf16 matrix into shared memory at
    /// <paramref name="dst"/>: element (r, k) at byte dst + 128 r + 2 k, swizzled; elements outside the matrix are zeros.
    /// </summary>
    public static void TmaLoad(byte[] smem, int dst, ushort[] matrix, int rows, int cols, int ld, int k0, int row0, int boxRows)
    {
        if (dst % 1024 != 0) throw new InvalidOperationException($"a 128-byte-swizzled TMA box at {dst} is not 1024-aligned");
        for (int r = 0; r < boxRows; r++)
        {
            for (int k = 0; k < 64; k++)
            {
                int gr = row0 + r, gk = k0 + k;
                ushort v = gr < rows && gk < cols ? matrix[gr * ld + gk] : (ushort)0;
                int at = Swizzle128(dst + 128 * r + 2 * k);
                smem[at] = (byte)v;
                smem[at + 1] = (byte)(v >> 8);
            }
        }
    }

    /// <summary>The shared byte address wgmma reads for row <paramref name="row"/>, element <paramref name="k"/> (0..15) of a K-major operand.</summary>
    public static int Address(Descriptor d, int row, int k)
    {
        if (d.Swizzle != 1) throw new InvalidOperationException($"descriptor swizzle mode {d.Swizzle}: the emulator knows 128-byte swizzling (1) only");
        if (d.BaseOffset != ((d.Start >> 7) & 7)) throw new InvalidOperationException($"base offset {d.BaseOffset} disagrees with start {d.Start}");
        if (d.Start % 128 + 32 > 128) throw new InvalidOperationException($"a k16 step at {d.Start} crosses a 128-byte line");
        return Swizzle128(d.Start + (row >> 3) * d.StrideOffset + (row & 7) * 128 + 2 * k);
    }

    /// <summary>
    /// One warpgroup's wgmma.mma_async.m64n128k16.f32.bf16.bf16 with scale-d 1: acc[thread][register] += A B^T, A 64 x 16 and
    /// B 128 x 16 read through their descriptors.
    /// </summary>
    public static void Mma(byte[] smem, ulong descA, ulong descB, float[,] acc)
    {
        Descriptor a = Decode(descA), b = Decode(descB);
        float Bf16(int at) => BitConverter.Int32BitsToSingle((smem[at] | smem[at + 1] << 8) << 16);
        for (int thread = 0; thread < 128; thread++)
        {
            for (int i = 0; i < 64; i++)
            {
                var (row, col) = Element(thread, i);
                float sum = acc[thread, i];
                for (int k = 0; k < 16; k++) sum += Bf16(Address(a, row, k)) * Bf16(Address(b, col, k));
                acc[thread, i] = sum;
            }
        }
    }

    /// <summary>The (row, column) of D in accumulator register <paramref name="i"/> of a warpgroup's thread (0..127), m64nNk16.</summary>
    public static (int Row, int Col) Element(int thread, int i)
    {
        int warp = thread >> 5, lane = thread & 31;
        return (16 * warp + lane / 4 + 8 * (i % 4 / 2), 8 * (i / 4) + 2 * (lane % 4) + i % 2);
    }

    /// <summary>
    /// Runs an inline-PTX template made of mov/add.s64/setp/wgmma statements (the wgmma kernel's Tile64): registers %128 and
    /// %129 are the A and B descriptors, %0..%63 the accumulators (in and out, after the template's moves from %64..%127).
    /// Returns how many wgmma it executed. Anything else in the template fails the emulation, so a changed template is seen.
    /// </summary>
    public static int RunTemplate(string template, byte[] smem, ulong descA, ulong descB, float[,] acc)
    {
        var values = new Dictionary<string, ulong> { ["%128"] = descA, ["%129"] = descB };
        int count = 0;
        foreach (var raw in template.Split(';'))
        {
            string s = Regex.Replace(raw.Trim().TrimStart('{', '}').Trim(), @"\s+", " ");
            if (s.Length == 0 || s.StartsWith(".reg ") || s.StartsWith("setp.ne.u32 p, %130, 0") || s.StartsWith("wgmma.fence") || s.StartsWith("wgmma.commit_group"))
                continue;
            Match m;
            if ((m = Regex.Match(s, @"^mov\.b32 %(\d+), %(\d+)$")).Success)
            {
                if (int.Parse(m.Groups[2].Value) != int.Parse(m.Groups[1].Value) + 64)
                    throw new InvalidOperationException($"'{s}': accumulator %{m.Groups[1].Value} is not moved from input %{int.Parse(m.Groups[1].Value) + 64}");
                continue;
            }
            if ((m = Regex.Match(s, @"^add\.s64 (\w+), (%?\w+), (\d+)$")).Success)
            {
                values[m.Groups[1].Value] = values[m.Groups[2].Value] + ulong.Parse(m.Groups[3].Value);
                continue;
            }
            if ((m = Regex.Match(s, @"^wgmma\.mma_async\.sync\.aligned\.m64n128k16\.f32\.bf16\.bf16 \{([^}]*)\}, (%?\w+), (%?\w+), p, 1, 1, 0, 0$")).Success)
            {
                var d = m.Groups[1].Value.Split(',').Select(x => x.Trim()).ToArray();
                if (!d.SequenceEqual(Enumerable.Range(0, 64).Select(j => $"%{j}")))
                    throw new InvalidOperationException("the accumulator list is not %0..%63 in order");
                Mma(smem, values[m.Groups[2].Value], values[m.Groups[3].Value], acc);
                count++;
                continue;
            }
            throw new InvalidOperationException($"the emulator does not know '{s}'");
        }
        return count;
    }
}
