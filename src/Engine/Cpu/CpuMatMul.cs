using System.Buffers;
using System.Runtime.InteropServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// Batched matmul on the CPU: a (..., M, K) @ b (..., K, N) -> c (..., M, N), one GEMM per batch index.
/// c is contiguous; a and b are views as the front end made them: batch axes broadcast (stride 0)
/// and matrix axes of any strides. A matrix whose last axis has stride 1 is row-major (op = X, ld = its
/// row stride); one whose second-last axis has stride 1 is column-major, i.e. the transpose of a
/// row-major matrix (op = X^T, ld = its column stride), so a.MT costs no copy. Anything else is
/// gathered into a contiguous scratch matrix first.
/// </summary>
internal static class CpuMatMul
{
    public static void MatMul(Tensor a, Tensor b, Tensor c)
    {
        int rank = c.Rank;
        if (a.Rank != rank || b.Rank != rank || rank < 2)
            throw new ArgumentException($"matmul: operands {a.Describe()} @ {b.Describe()} -> {c.Describe()} need equal ranks >= 2");
        int m = a.Shape[^2], k = a.Shape[^1], n = b.Shape[^1];
        if (b.Shape[^2] != k)
            throw new ArgumentException($"matmul: inner sizes differ: {a.Describe()} @ {b.Describe()} ({k} vs {b.Shape[^2]})");
        if (c.Shape[^2] != m || c.Shape[^1] != n || !a.Shape.AsSpan(0, rank - 2).SequenceEqual(c.Shape.AsSpan(0, rank - 2))
            || !b.Shape.AsSpan(0, rank - 2).SequenceEqual(c.Shape.AsSpan(0, rank - 2)))
            throw new ArgumentException($"matmul: shapes {a.Describe()} @ {b.Describe()} do not give {c.Describe()}");
        if (!c.IsContiguous) throw new ArgumentException($"matmul: output {c.Describe()} must be contiguous");
        if (c.Numel == 0) return;

        switch (a.DType)
        {
            case DType.F32: Run<float>(a, b, c, m, n, k); break;
            case DType.F64: Run<double>(a, b, c, m, n, k); break;
            case DType.F16 or DType.BF16:
                // 16-bit floats: float32 copies, float32 accumulation (as the tensor-core kernels do), one rounding at the end.
                var wa = Widen(a);
                var wb = Widen(b);
                var wc = Tensor.Empty(c.Shape, DType.F32);
                Run<float>(wa, wb, wc, m, n, k);
                CpuCopy.Copy(wc, c);
                break;
            default: throw new NotSupportedException($"matmul on the CPU supports F32, F64, F16 and BF16, got {a.Describe()} @ {b.Describe()}");
        }
    }

    private static Tensor Widen(Tensor t)
    {
        var f = Tensor.Empty(t.Shape, DType.F32);
        CpuCopy.Copy(t, f);
        return f;
    }

    /// <summary>How a stored matrix (rows x cols, strides rs, cs) is handed to the GEMM: op and leading
    /// dimension, or null when neither its rows nor its columns are at unit stride.</summary>
    private static (bool Trans, int Ld)? GemmLayout(int rows, int cols, int rs, int cs)
    {
        // A size-1 axis may have any stride; give it the one a dense matrix would have.
        if ((cs == 1 || cols == 1) && (rows == 1 || rs >= cols)) return (false, rows == 1 ? cols : rs);
        if ((rs == 1 || rows == 1) && (cols == 1 || cs >= rows)) return (true, cols == 1 ? rows : cs);
        return null;
    }

    private static void Run<T>(Tensor a, Tensor b, Tensor c, int m, int n, int k) where T : unmanaged
    {
        int rank = c.Rank;
        T[] aData = a.Elements<T>(), bData = b.Elements<T>(), cData = c.Elements<T>();
        var aLayout = GemmLayout(m, k, a.Strides[^2], a.Strides[^1]);
        var bLayout = GemmLayout(k, n, b.Strides[^2], b.Strides[^1]);
        int batch = c.Numel / (m * n);

        // Fold: B is the same matrix for every batch index and A's batch and row axes merge into one
        // axis of row stride lda, so (batch * M, K) @ (K, N) is one large GEMM (a Linear layer's case).
        if (batch > 1 && aLayout is { Trans: false } al && bLayout is { } bl0
            && b.Strides.AsSpan(0, rank - 2).IndexOfAnyExcept(0) < 0 && RowsMerge(a, al.Ld))
        {
            Gemm<T>(false, bl0.Trans, batch * m, n, k, aData, a.Offset, al.Ld, bData, b.Offset, bl0.Ld, cData, c.Offset, n);
            return;
        }

        var batchShape = c.Shape.AsSpan(0, rank - 2).ToArray();
        var aBatchStrides = a.Strides.AsSpan(0, rank - 2).ToArray();
        var bBatchStrides = b.Strides.AsSpan(0, rank - 2).ToArray();
        void One(int index)
        {
            int aOff = a.Offset, bOff = b.Offset, rem = index;
            for (int d = batchShape.Length - 1; d >= 0; d--)
            {
                int i = rem % batchShape[d];
                rem /= batchShape[d];
                aOff += i * aBatchStrides[d];
                bOff += i * bBatchStrides[d];
            }
            T[]? aScratch = null, bScratch = null;
            var (aTrans, lda) = aLayout ?? (false, k);
            var (bTrans, ldb) = bLayout ?? (false, n);
            T[] aSrc = aData, bSrc = bData;
            if (aLayout is null)
            {
                aScratch = Gather(aData, aOff, m, k, a.Strides[^2], a.Strides[^1]);
                (aSrc, aOff) = (aScratch, 0);
            }
            if (bLayout is null)
            {
                bScratch = Gather(bData, bOff, k, n, b.Strides[^2], b.Strides[^1]);
                (bSrc, bOff) = (bScratch, 0);
            }
            Gemm<T>(aTrans, bTrans, m, n, k, aSrc, aOff, lda, bSrc, bOff, ldb, cData, c.Offset + index * m * n, n);
            if (aScratch is not null) ArrayPool<T>.Shared.Return(aScratch);
            if (bScratch is not null) ArrayPool<T>.Shared.Return(bScratch);
        }

        // Large matrices: one after the other, each GEMM using every core. Small ones (or F64, whose
        // GEMM is single-threaded): one GEMM per thread across the batch.
        bool gemmIsThreaded = typeof(T) == typeof(float) && (long)m * n * k >= Sgemm.ParallelLimit;
        if (batch > 1 && !gemmIsThreaded && CpuParallel.Enabled) Parallel.For(0, batch, One);
        else for (int i = 0; i < batch; i++) One(i);
    }

    /// <summary>True when a's batch axes and row axis form one axis of stride ld (each stride is the
    /// next one times its size; size-1 axes don't matter), so all batch rows are rows of one matrix.</summary>
    private static bool RowsMerge(Tensor a, int ld)
    {
        long expected = ld;
        for (int d = a.Rank - 2; d >= 0; d--)
        {
            if (a.Shape[d] == 1) continue;
            if (a.Strides[d] != expected) return false;
            expected *= a.Shape[d];
        }
        return true;
    }

    /// <summary>Copies a strided rows x cols matrix into a pooled dense row-major array.</summary>
    private static T[] Gather<T>(T[] data, int offset, int rows, int cols, int rs, int cs) where T : unmanaged
    {
        var dense = ArrayPool<T>.Shared.Rent(rows * cols);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                dense[i * cols + j] = data[offset + i * rs + j * cs];
        return dense;
    }

    private static void Gemm<T>(bool transA, bool transB, int m, int n, int k,
        T[] a, int aOff, int lda, T[] b, int bOff, int ldb, T[] c, int cOff, int ldc) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            Cpu.Gemm.Run(transA, transB, m, n, k, 1f, MemoryMarshal.Cast<T, float>(a.AsSpan(aOff)), lda,
                MemoryMarshal.Cast<T, float>(b.AsSpan(bOff)), ldb, 0f, MemoryMarshal.Cast<T, float>(c.AsSpan(cOff, m * ldc)), ldc);
        else
            Cpu.Gemm.Run(transA, transB, m, n, k, 1.0, MemoryMarshal.Cast<T, double>(a.AsSpan(aOff)), lda,
                MemoryMarshal.Cast<T, double>(b.AsSpan(bOff)), ldb, 0.0, MemoryMarshal.Cast<T, double>(c.AsSpan(cOff, m * ldc)), ldc);
    }
}
