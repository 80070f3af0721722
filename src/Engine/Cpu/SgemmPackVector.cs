using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedTensor.Cpu;

/// <summary>
/// SIMD forms of <see cref="SgemmPack"/> for the full slivers of the AVX-512 kernel (MR x NR = 12 x 32),
/// the common case; <see cref="SgemmPack"/> keeps the scalar loops for edges and the other kernels, and
/// the layouts are the same:
///     A sliver (12 x kc): element (r, p) at dst[p * 12 + r]
///     B sliver (kc x 32): element (p, j) at dst[p * 32 + j]
/// Why it matters: packing touches every element of A once per GEMM, and the micro-kernel does only N
/// multiply-adds per element of A. At nanoGPT's CPU shape (768 x 128 activations times 128 x 128 ... 512
/// weights) N is 128: the scalar pack (a strided store per element) took half as long as the kernel.
///
/// A row-major A (or a B stored N x K, a Linear layer's weight) must be transposed into the sliver: that
/// is done 8 x 8 at a time in registers (the classic unpack / shuffle / permute transpose, 24 shuffles for
/// 64 elements) instead of one strided store per element. A transposed A and a row-major B are already
/// in sliver order: each row of the sliver is one contiguous run of the source, copied as vectors.
/// </summary>
internal static unsafe class SgemmPackVector
{
    /// <summary>The packs here need AVX2 (every CPU with the AVX-512 kernel has it).</summary>
    public static bool Supported => Avx2.IsSupported && Avx512F.IsSupported;

    /// <summary>One full A sliver: op(A) rows [row0, row0 + 12), columns [p0, p0 + kc), times alpha.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void A12(bool transA, float* a, nint lda, int row0, int p0, int kc, float alpha, float* dst)
    {
        if (transA)
        {
            // op(A)[i, p] = a[p * lda + i]: the 12 values of column p are contiguous.
            var va8 = Vector256.Create(alpha);
            var va4 = Vector128.Create(alpha);
            float* src = a + (nint)p0 * lda + row0;
            for (int p = 0; p < kc; p++, src += lda, dst += 12)
            {
                (Vector256.Load(src) * va8).Store(dst);
                (Vector128.Load(src + 8) * va4).Store(dst + 8);
            }
            return;
        }
        // op(A)[i, p] = a[i * lda + p]: 12 rows, transposed 8 columns at a time.
        float* rows = a + (nint)row0 * lda + p0;
        int q = 0;
        for (; q + 8 <= kc; q += 8)
        {
            SimdTranspose.Transpose8x8(rows + q, lda, dst + q * 12, 12, alpha);
            SimdTranspose.Transpose4x8(rows + 8 * lda + q, lda, dst + q * 12 + 8, 12, alpha);
        }
        for (; q < kc; q++)
            for (int r = 0; r < 12; r++) dst[q * 12 + r] = alpha * rows[r * lda + q];
    }

    /// <summary>One full B sliver: op(B) rows [p0, p0 + kc), columns [col0, col0 + 32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void B32(bool transB, float* b, nint ldb, int p0, int kc, int col0, float* dst)
    {
        if (!transB)
        {
            // op(B)[p, j] = b[p * ldb + j]: each packed row is 32 contiguous values.
            float* src = b + (nint)p0 * ldb + col0;
            for (int p = 0; p < kc; p++, src += ldb, dst += 32)
            {
                Vector512.Load(src).Store(dst);
                Vector512.Load(src + 16).Store(dst + 16);
            }
            return;
        }
        // op(B)[p, j] = b[j * ldb + p]: 32 stored rows (4 groups of 8), transposed 8 values of p at a time.
        float* rows = b + (nint)col0 * ldb + p0;
        int q = 0;
        for (; q + 8 <= kc; q += 8)
            for (int g = 0; g < 4; g++) SimdTranspose.Transpose8x8(rows + 8 * g * ldb + q, ldb, dst + q * 32 + 8 * g, 32, 1f);
        for (; q < kc; q++)
            for (int j = 0; j < 32; j++) dst[q * 32 + j] = rows[j * ldb + q];
    }
}
