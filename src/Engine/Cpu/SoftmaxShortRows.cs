using System.Runtime.Intrinsics;

namespace ManagedTensor.Cpu;

/// <summary>
/// Float32 softmax / log-softmax over short rows (C a multiple of 8, at most <see cref="MaxC"/>): YOLOv8's DFL head
/// takes a softmax over 16 bins for each of 67,200 box sides. Five TensorPrimitives calls per row of 16 cost more in
/// call overhead than in arithmetic, so rows go a block at a time: each row's max and its shift x - max in a few
/// Vector256 steps, then one exp loop over the whole block (<see cref="VectorExp"/>; where the time goes), then each
/// row's sum and scale.
/// Same formulas as <see cref="CpuNorm"/>'s row loop: softmax = exp(x - m) / sum, log-softmax = x - m - log(sum).
/// </summary>
internal static class SoftmaxShortRows
{
    public const int MaxC = 64;

    /// <summary>Rows per block: a block of (BlockRows, C) floats stays in L1 between the passes.</summary>
    private const int BlockElements = 2048;

    public static bool Handles(int c) => c >= 8 && c <= MaxC && c % 8 == 0 && Vector256.IsHardwareAccelerated;

    /// <summary>Rows [r0, r1) of (rows, c) x into y.</summary>
    public static void Run(float[] xa, int xo, float[] ya, int yo, int c, int r0, int r1, bool log)
    {
        Span<float> rowMax = stackalloc float[BlockElements / 8];
        int blockRows = BlockElements / c;
        for (int b0 = r0; b0 < r1; b0 += blockRows)
        {
            int nr = Math.Min(blockRows, r1 - b0);
            ref float x = ref xa[xo + b0 * c];
            ref float y = ref ya[yo + b0 * c];
            for (int r = 0; r < nr; r++)
            {
                nuint o = (nuint)(r * c);
                var m = Vector256.LoadUnsafe(ref x, o);
                for (int k = 8; k < c; k += 8) m = Vector256.Max(m, Vector256.LoadUnsafe(ref x, o + (nuint)k));
                float mx = HorizontalMax(m);
                rowMax[r] = mx;
                var vm = Vector256.Create(mx);
                for (int k = 0; k < c; k += 8) (Vector256.LoadUnsafe(ref x, o + (nuint)k) - vm).StoreUnsafe(ref y, o + (nuint)k);
            }
            for (int k = 0; k < nr * c; k += 8)      // exp(x - m) for every row of the block in one loop
                VectorExp.Exp(Vector256.LoadUnsafe(ref y, (nuint)k)).StoreUnsafe(ref y, (nuint)k);
            for (int r = 0; r < nr; r++)
            {
                nuint o = (nuint)(r * c);
                var s = Vector256<float>.Zero;
                for (int k = 0; k < c; k += 8) s += Vector256.LoadUnsafe(ref y, o + (nuint)k);
                float sum = Vector256.Sum(s);
                if (log)
                {
                    var shift = Vector256.Create(rowMax[r] + MathF.Log(sum));
                    for (int k = 0; k < c; k += 8) (Vector256.LoadUnsafe(ref x, o + (nuint)k) - shift).StoreUnsafe(ref y, o + (nuint)k);
                }
                else
                {
                    var inv = Vector256.Create(1 / sum);
                    for (int k = 0; k < c; k += 8) (Vector256.LoadUnsafe(ref y, o + (nuint)k) * inv).StoreUnsafe(ref y, o + (nuint)k);
                }
            }
        }
    }

    /// <summary>The largest of the 8 lanes (a NaN lane may or may not win; a NaN input makes its row NaN either way through exp).</summary>
    private static float HorizontalMax(Vector256<float> v)
    {
        var h = Vector128.Max(v.GetLower(), v.GetUpper());
        h = Vector128.Max(h, Vector128.Shuffle(h, Vector128.Create(2, 3, 0, 1)));
        h = Vector128.Max(h, Vector128.Shuffle(h, Vector128.Create(1, 0, 3, 2)));
        return h.ToScalar();
    }
}
