using System.Numerics.Tensors;

namespace ManagedTensor.Cpu;

/// <summary>
/// y = x W^T for float32 activations x (M, K) and a weight W (N, K) kept in 16 bits (F16 or BF16), the CPU kernel of
/// QMatMul for 16-bit weights: W is read as stored and widened a piece at a time, never copied whole to float32.
/// A few rows of x (decoding) take one W row at a time, widened into a row buffer and dotted with every x row while it is
/// in cache, rows split across threads: the product reads 2 bytes per weight. More rows (a prompt) widen a tile of W's
/// rows (about 1 MiB of floats) and multiply it by the SGEMM into the tile's columns of y.
/// </summary>
internal static class CpuHalfWeights
{
    private const int FewRows = 4;

    public static bool Handles(ReadOnlySpan<Tensor> inputs) =>
        inputs[0].DType == DType.F32 && inputs[1].DType is DType.F16 or DType.BF16 && inputs[1].IsContiguous;

    public static void MatMul(Tensor x, Tensor w, Tensor y)
    {
        int n = w.Shape[0], k = w.Shape[1], m = x.Numel / Math.Max(k, 1);
        if (m == 0 || n == 0) return;
        var xs = x.Data<float>().AsMemory(x.Offset, m * k);
        var ys = y.Data<float>().AsMemory(y.Offset, m * n);
        if (m <= FewRows)
        {
            CpuParallel.For(n, (long)k * m, (n0, n1) =>
            {
                var row = new float[k];
                var ySpan = ys.Span;
                var xSpan = xs.Span;
                for (int j = n0; j < n1; j++)
                {
                    Widen(w, j, 1, row);
                    for (int r = 0; r < m; r++) ySpan[r * n + j] = TensorPrimitives.Dot<float>(row, xSpan.Slice(r * k, k));
                }
            });
            return;
        }
        int tile = Math.Clamp((1 << 18) / Math.Max(k, 1), 1, n);   // rows of W per tile: about 1 MiB of float32
        var buf = new float[(long)tile * k];
        for (int j0 = 0; j0 < n; j0 += tile)
        {
            int rows = Math.Min(tile, n - j0);
            CpuParallel.For(rows, k, (r0, r1) => Widen(w, j0 + r0, r1 - r0, buf.AsSpan(r0 * k, (r1 - r0) * k)));
            Gemm.Run(false, true, m, rows, k, 1f, xs.Span, k, buf.AsSpan(0, rows * k), k, 0f, ys.Span[j0..], n); // columns j0.. of y
        }
    }

    /// <summary>Rows [row, row + count) of the 16-bit W as float32.</summary>
    private static void Widen(Tensor w, int row, int count, Span<float> dst)
    {
        int k = w.Shape[1];
        long start = w.Offset + (long)row * k;
        int len = count * k;
        if (w.DType == DType.F16) TensorPrimitives.ConvertToSingle(w.Data<Half>().AsSpan((int)start, len), dst[..len]);
        else BFloat16Span.ToFloat(w.Data<BFloat16>().AsSpan((int)start, len), dst[..len]);
    }
}
