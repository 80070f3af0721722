using System.Runtime.CompilerServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// Packing for the SGEMM: copies a block of op(A) or op(B) into the sliver layout the micro-kernel
/// streams through, so that the kernel reads both operands at unit stride whatever the transposes and
/// leading dimensions were, and the block sits contiguously in cache (no conflict misses from a large
/// lda). Ragged edges are padded with zeros to a full sliver, so the kernel never needs a bounds check.
///
/// A block (mc x kc) -> ceil(mc / MR) slivers, each MR x kc stored column by column:
///     sliver s, element (r, p) at  dst[s * MR * kc + p * MR + r] = alpha * op(A)[i0 + s * MR + r, p0 + p]
/// B block (kc x nc) -> ceil(nc / NR) slivers, each kc x NR stored row by row:
///     sliver s, element (p, j) at  dst[s * NR * kc + p * NR + j] = op(B)[p0 + p, j0 + s * NR + j]
/// Full slivers of the AVX-512 kernel take the SIMD forms in <see cref="SgemmPackVector"/>.
/// </summary>
internal static unsafe class SgemmPack
{
    /// <summary>Packs op(A)[i0 .. i0+mc, p0 .. p0+kc], scaled by alpha (one multiply per element of A
    /// instead of one per element of C per k block).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void A(bool transA, float* a, nint lda, int i0, int mc, int p0, int kc, float alpha, int mr, float* dst)
    {
        for (int s = 0; s < mc; s += mr)
        {
            int rows = Math.Min(mr, mc - s);
            if (rows == 12 && mr == 12 && SgemmPackVector.Supported) SgemmPackVector.A12(transA, a, lda, i0 + s, p0, kc, alpha, dst);
            else if (!transA)
            {
                // op(A)[i, p] = a[i * lda + p]: read each row at unit stride, write with stride MR.
                for (int r = 0; r < rows; r++)
                {
                    float* src = a + (i0 + s + r) * lda + p0;
                    for (int p = 0; p < kc; p++) dst[p * mr + r] = alpha * src[p];
                }
            }
            else
            {
                // op(A)[i, p] = a[p * lda + i]: each column of the sliver is contiguous in a.
                for (int p = 0; p < kc; p++)
                {
                    float* src = a + (p0 + p) * lda + i0 + s;
                    for (int r = 0; r < rows; r++) dst[p * mr + r] = alpha * src[r];
                }
            }
            for (int r = rows; r < mr; r++)
                for (int p = 0; p < kc; p++) dst[p * mr + r] = 0f;
            dst += mr * kc;
        }
    }

    /// <summary>Packs op(B)[p0 .. p0+kc, j0 .. j0+nc].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void B(bool transB, float* b, nint ldb, int p0, int kc, int j0, int nc, int nr, float* dst)
    {
        for (int s = 0; s < nc; s += nr)
        {
            int cols = Math.Min(nr, nc - s);
            if (cols == 32 && nr == 32 && SgemmPackVector.Supported) SgemmPackVector.B32(transB, b, ldb, p0, kc, j0 + s, dst);
            else if (!transB)
            {
                // op(B)[p, j] = b[p * ldb + j]: each row of the sliver is a contiguous run of b.
                for (int p = 0; p < kc; p++)
                {
                    float* src = b + (p0 + p) * ldb + j0 + s;
                    float* d = dst + p * nr;
                    Buffer.MemoryCopy(src, d, cols * sizeof(float), cols * sizeof(float));
                    for (int j = cols; j < nr; j++) d[j] = 0f;
                }
            }
            else
            {
                // op(B)[p, j] = b[j * ldb + p]: walk the sliver's NR source rows side by side, so each
                // packed row is written whole (the reads are NR sequential streams, each a cache line at a time).
                float* src = b + (j0 + s) * ldb + p0;
                for (int p = 0; p < kc; p++)
                {
                    float* d = dst + p * nr;
                    for (int j = 0; j < cols; j++) d[j] = src[j * ldb + p];
                    for (int j = cols; j < nr; j++) d[j] = 0f;
                }
            }
            dst += nr * kc;
        }
    }
}
