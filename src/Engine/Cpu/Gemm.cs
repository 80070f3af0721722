using System.Numerics.Tensors;

namespace ManagedTensor.Cpu;

/// <summary>
/// The CPU GEMM entry point every CPU op uses (matmul, conv via im2col, ...):
/// C = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T.
/// A is M x K (K x M when transA), B is K x N (N x K when transB); lda/ldb/ldc are row strides.
/// The float path dispatches to the blocked SIMD SGEMM (Sgemm.cs); double uses a plain row-wise loop
/// over vectorized primitives (it serves F64 gradient checks, where exactness matters, not speed).
/// beta = 0 never reads C.
/// </summary>
public static class Gemm
{
    public static unsafe void Run(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        CheckOperands(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        if (!transA && transB && m == 1 && k > 0)
        {
            RowTimesRows(n, k, alpha, a, b, ldb, beta, c);
            return;
        }
        if (!transA && transB && m <= SwapRowLimit && n >= 4 * m && k > 0)
        {
            RunSwapped(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        fixed (float* pa = a, pb = b, pc = c)
            Sgemm.Run(Sgemm.Best, transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, Environment.ProcessorCount);
    }

    /// <summary>
    /// One row times B^T (a linear layer on one token): c[j] = alpha dot(a, B[j, :]) + beta c[j], a dot
    /// product per stored row of B, contiguous, with no packing at all; rows are split between threads
    /// when there is enough work.
    /// </summary>
    private static unsafe void RowTimesRows(int n, int k, float alpha, ReadOnlySpan<float> a, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c)
    {
        fixed (float* pa = a, pb = b, pc = c)
        {
            nint xa = (nint)pa, xb = (nint)pb, xc = (nint)pc; // addresses, so that the worker lambdas can carry them
            void Rows(int j0, int j1)
            {
                var row = new ReadOnlySpan<float>((float*)xa, k);
                for (int j = j0; j < j1; j++)
                {
                    float d = alpha * TensorPrimitives.Dot(row, new ReadOnlySpan<float>((float*)xb + (nint)j * ldb, k));
                    float* cj = (float*)xc + j;
                    *cj = beta == 0 ? d : d + beta * *cj; // beta = 0 never reads C
                }
            }
            int threads = Environment.ProcessorCount;
            if ((long)n * k < Sgemm.ParallelLimit || threads <= 1) Rows(0, n);
            else
            {
                int chunk = (n + 4 * threads - 1) / (4 * threads);
                Parallel.For(0, (n + chunk - 1) / chunk, i => Rows(i * chunk, Math.Min(n, (i + 1) * chunk)));
            }
        }
    }

    /// <summary>Up to this many rows of A, C = A B^T with a wide B runs as (B A^T)^T (see RunSwapped).</summary>
    public const int SwapRowLimit = 256;

    /// <summary>
    /// C = alpha A B^T + beta C for a few rows of A (M small) and a wide B stored N x K: a linear layer on a
    /// few tokens (prefill, decode batches). Packing a transposed B gathers across its rows and costs more
    /// than the few rows of A it is multiplied with, so the product is computed the other way round:
    /// C^T = B A^T, where B is the A operand (its packing copies rows) and A^T the small B operand, then
    /// transposed into C. Measured at M = 32, N = 5632, K = 2048: 33 GFLOP/s against 14 (2 cores).
    /// </summary>
    private static unsafe void RunSwapped(int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        float[] rented = System.Buffers.ArrayPool<float>.Shared.Rent(m * n);
        try
        {
            fixed (float* pa = a, pb = b, pt = rented)
                Sgemm.Run(Sgemm.Best, false, true, n, m, k, alpha, pb, ldb, pa, lda, 0f, pt, m, Environment.ProcessorCount); // (N, M)
            for (int i = 0; i < m; i++)
            {
                var row = c.Slice(i * ldc, n);
                for (int j = 0; j < n; j++) row[j] = rented[j * m + i] + (beta == 0 ? 0f : beta * row[j]);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(rented);
        }
    }

    public static void Run(bool transA, bool transB, int m, int n, int k, double alpha,
        ReadOnlySpan<double> a, int lda, ReadOnlySpan<double> b, int ldb, double beta, Span<double> c, int ldc)
    {
        CheckOperands(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        // Row i of op(A), gathered when A is transposed so that the inner loops run at unit stride.
        Span<double> aRow = k <= 512 ? stackalloc double[k] : new double[k];
        for (int i = 0; i < m; i++)
        {
            var cRow = c.Slice(i * ldc, n);
            if (beta == 0) cRow.Clear();
            else if (beta != 1) TensorPrimitives.Multiply(cRow, beta, cRow);
            if (k == 0 || alpha == 0) continue;
            if (transA) for (int p = 0; p < k; p++) aRow[p] = a[p * lda + i];
            else a.Slice(i * lda, k).CopyTo(aRow);
            if (!transB)
            {
                // C[i, :] += alpha * A[i, p] * B[p, :]  (axpy over rows of B)
                for (int p = 0; p < k; p++)
                    TensorPrimitives.MultiplyAdd(b.Slice(p * ldb, n), alpha * aRow[p], cRow, cRow);
            }
            else
            {
                // C[i, j] += alpha * dot(A[i, :], B^T row j)  (rows of the stored B are columns of op(B))
                for (int j = 0; j < n; j++)
                    cRow[j] += alpha * TensorPrimitives.Dot(aRow, b.Slice(j * ldb, k));
            }
        }
    }

    /// <summary>The plain triple loop, the definition the fast kernels are tested against.</summary>
    public static void Reference<T>(bool transA, bool transB, int m, int n, int k, T alpha,
        ReadOnlySpan<T> a, int lda, ReadOnlySpan<T> b, int ldb, T beta, Span<T> c, int ldc)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                T sum = T.Zero;
                for (int p = 0; p < k; p++)
                {
                    T av = transA ? a[p * lda + i] : a[i * lda + p];
                    T bv = transB ? b[j * ldb + p] : b[p * ldb + j];
                    sum += av * bv;
                }
                T prev = beta == T.Zero ? T.Zero : beta * c[i * ldc + j];
                c[i * ldc + j] = alpha * sum + prev;
            }
        }
    }

    /// <summary>Checks sizes and leading dimensions against the spans, so the unsafe kernels stay in bounds.</summary>
    private static void CheckOperands(bool transA, bool transB, int m, int n, int k,
        int aLength, int lda, int bLength, int ldb, int cLength, int ldc)
    {
        if (m < 0 || n < 0 || k < 0) throw new ArgumentException($"gemm: negative size m={m} n={n} k={k}");
        CheckMatrix("A", transA ? k : m, transA ? m : k, aLength, lda);
        CheckMatrix("B", transB ? n : k, transB ? k : n, bLength, ldb);
        CheckMatrix("C", m, n, cLength, ldc);
    }

    private static void CheckMatrix(string name, int rows, int cols, int length, int ld)
    {
        if (rows == 0 || cols == 0) return;
        if (ld < cols) throw new ArgumentException($"gemm: {name} is stored {rows} x {cols} but its leading dimension is {ld}");
        long need = (long)(rows - 1) * ld + cols;
        if (length < need) throw new ArgumentException($"gemm: {name} ({rows} x {cols}, ld {ld}) needs {need} elements, the span has {length}");
    }
}
