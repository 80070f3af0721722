using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedTensor.Cpu;

/// <summary>
/// Float transposes of small blocks in AVX registers, for the packing of the SGEMM (SgemmPackVector) and
/// the key tiles of CPU attention: a strided store per element costs several times what the 24 shuffles
/// of an 8 x 8 block do. Callers check <see cref="Avx.IsSupported"/>.
/// </summary>
internal static unsafe class SimdTranspose
{
    /// <summary>
    /// Reads 8 rows of 8 (row i at src + i * srcStride) and writes column j, times alpha, as 8 values at
    /// dst + j * dstStride: after the unpacks, t holds pairs of rows interleaved; the shuffles gather 4 rows
    /// of one column in each 128-bit half (column c low, c + 4 high); the permutes join rows 0-3 and 4-7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose8x8(float* src, nint srcStride, float* dst, nint dstStride, float alpha)
    {
        var r0 = Vector256.Load(src); var r1 = Vector256.Load(src + srcStride);
        var r2 = Vector256.Load(src + 2 * srcStride); var r3 = Vector256.Load(src + 3 * srcStride);
        var r4 = Vector256.Load(src + 4 * srcStride); var r5 = Vector256.Load(src + 5 * srcStride);
        var r6 = Vector256.Load(src + 6 * srcStride); var r7 = Vector256.Load(src + 7 * srcStride);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE); // columns 0|4, 1|5 of rows 0-3
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE); // columns 2|6, 3|7
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE); // the same for rows 4-7
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        var va = Vector256.Create(alpha);
        (Avx.Permute2x128(u0, u4, 0x20) * va).Store(dst);
        (Avx.Permute2x128(u1, u5, 0x20) * va).Store(dst + dstStride);
        (Avx.Permute2x128(u2, u6, 0x20) * va).Store(dst + 2 * dstStride);
        (Avx.Permute2x128(u3, u7, 0x20) * va).Store(dst + 3 * dstStride);
        (Avx.Permute2x128(u0, u4, 0x31) * va).Store(dst + 4 * dstStride);
        (Avx.Permute2x128(u1, u5, 0x31) * va).Store(dst + 5 * dstStride);
        (Avx.Permute2x128(u2, u6, 0x31) * va).Store(dst + 6 * dstStride);
        (Avx.Permute2x128(u3, u7, 0x31) * va).Store(dst + 7 * dstStride);
    }

    /// <summary>4 rows of 8 to 8 columns of 4 (column j at dst + j * dstStride), times alpha: the first two steps of <see cref="Transpose8x8"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose4x8(float* src, nint srcStride, float* dst, nint dstStride, float alpha)
    {
        var r0 = Vector256.Load(src); var r1 = Vector256.Load(src + srcStride);
        var r2 = Vector256.Load(src + 2 * srcStride); var r3 = Vector256.Load(src + 3 * srcStride);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var va = Vector256.Create(alpha);
        var u0 = Avx.Shuffle(t0, t2, 0x44) * va; var u1 = Avx.Shuffle(t0, t2, 0xEE) * va; // columns 0|4, 1|5
        var u2 = Avx.Shuffle(t1, t3, 0x44) * va; var u3 = Avx.Shuffle(t1, t3, 0xEE) * va; // columns 2|6, 3|7
        u0.GetLower().Store(dst); u1.GetLower().Store(dst + dstStride);
        u2.GetLower().Store(dst + 2 * dstStride); u3.GetLower().Store(dst + 3 * dstStride);
        u0.GetUpper().Store(dst + 4 * dstStride); u1.GetUpper().Store(dst + 5 * dstStride);
        u2.GetUpper().Store(dst + 6 * dstStride); u3.GetUpper().Store(dst + 7 * dstStride);
    }

    /// <summary>
    /// dst (cols x rows, row stride ldDst) = src (rows x cols, row stride ldSrc) transposed, for rows and
    /// cols multiples of 8.
    /// </summary>
    public static void Blocks(float* src, nint ldSrc, int rows, int cols, float* dst, nint ldDst)
    {
        for (int i = 0; i < rows; i += 8)
            for (int j = 0; j < cols; j += 8)
                Transpose8x8(src + i * ldSrc + j, ldSrc, dst + j * ldDst + i, ldDst, 1f);
    }
}
