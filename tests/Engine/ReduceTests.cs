using Xunit;
using static ManagedTensor.Tests.Engine.EngineRef;

namespace ManagedTensor.Tests.Engine;

/// <summary>Reductions over single, multiple and all axes, with and without keepdim, against float64 group-by references.</summary>
public class ReduceTests
{
    /// <summary>The elements reduced into each output (keepdim layout, row-major), in order along the reduced axes.</summary>
    private static List<double>[] Groups(double[] v, int[] shape, int[] axes)
    {
        var keep = (int[])shape.Clone();
        foreach (int a in axes) keep[a] = 1;
        var groups = Enumerable.Range(0, Numel(keep)).Select(_ => new List<double>()).ToArray();
        for (int i = 0; i < v.Length; i++)
        {
            var idx = Unravel(i, shape);
            foreach (int a in axes) idx[a] = 0;
            groups[Ravel(idx, keep)].Add(v[i]);
        }
        return groups;
    }

    private static double RefVar(List<double> g, int correction)
    {
        double mean = g.Average();
        return g.Sum(x => (x - mean) * (x - mean)) / Math.Max(0, g.Count - correction);
    }

    private static double RefMax(List<double> g) => g.Any(double.IsNaN) ? double.NaN : g.Max();
    private static double RefMin(List<double> g) => g.Any(double.IsNaN) ? double.NaN : g.Min();

    private static readonly (int[] Shape, int[] Axes)[] Cases =
    [
        ([7, 13], [1]), ([7, 13], [0]), ([7, 13], [0, 1]), ([2, 3, 4, 5], [1, 3]), ([2, 3, 4, 5], [0, 2]), ([2, 3, 4, 5], [2, 3]),
        ([2, 3, 4, 5], [0, 1, 2, 3]), ([3, 1, 5], [1]), ([5], [0]), ([], []), ([64, 40], [0]), ([300, 129], [1]), ([129, 300], [0]),
    ];

    /// <summary>x laid out contiguously and as a permuted (non-contiguous) view with the same logical shape.</summary>
    private static IEnumerable<(string, Tensor)> Inputs(int[] shape, DType dtype, int seed)
    {
        yield return ("contiguous", Random(shape, seed, dtype, -5, 5));
        if (shape.Length >= 2)
        {
            var rev = shape.Reverse().ToArray();
            var perm = Enumerable.Range(0, shape.Length).Reverse().ToArray();
            yield return ("permuted", Random(rev, seed + 1, dtype, -5, 5).Permute(perm));
        }
        if (shape.Length >= 1)
        {
            var wide = (int[])shape.Clone();
            wide[^1] += 2;
            yield return ("narrowed", Random(wide, seed + 2, dtype, -5, 5).Narrow(-1, 1, shape[^1]));
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void FloatReductionsMatchReference(DType dtype)
    {
        var (rtol, atol) = Tol(dtype);
        foreach (var (shape, axes) in Cases)
            foreach (var (layout, x) in Inputs(shape, dtype, 7))
                foreach (bool keep in new[] { true, false })
                {
                    var v = Values(x);
                    var groups = Groups(v, shape, axes);
                    var keepShape = (int[])shape.Clone();
                    foreach (int a in axes) keepShape[a] = 1;
                    var outShape = keep ? keepShape : shape.Where((_, i) => !axes.Contains(i)).ToArray();
                    string what = $"{dtype} {Tensor.ShapeString(shape)} axes {Tensor.ShapeString(axes)} keep={keep} {layout}";
                    int[]? ax = axes.Length == 0 ? null : axes;
                    void Check(string op, Tensor r, Func<List<double>, double> f)
                    {
                        Assert.Equal(outShape, r.Shape);
                        Assert.Equal(dtype, r.DType);
                        TestUtil.AssertClose(groups.Select(f).ToArray(), Values(r), rtol, atol * 10, $"{op} {what}");
                    }
                    Check("sum", x.Sum(ax, keep), g => g.Sum());
                    Check("mean", x.Mean(ax, keep), g => g.Average());
                    Check("max", x.Max(ax, keep), RefMax);
                    Check("min", x.Min(ax, keep), RefMin);
                    Check("var1", x.Var(ax, keep), g => RefVar(g, 1));
                    Check("var0", x.Var(ax, keep, correction: 0), g => RefVar(g, 0));
                }
    }

    [Theory]
    [InlineData(DType.I32)]
    [InlineData(DType.I64)]
    public void IntegerSumMaxMin(DType dtype)
    {
        foreach (var (shape, axes) in Cases)
            foreach (var (layout, x) in Inputs(shape, dtype, 3))
            {
                var groups = Groups(Values(x), shape, axes);
                int[]? ax = axes.Length == 0 ? null : axes;
                Assert.Equal(groups.Select(g => g.Sum()).ToArray(), Values(x.Sum(ax, keepDim: true)));
                Assert.Equal(groups.Select(g => g.Max()).ToArray(), Values(x.Max(ax, keepDim: true)));
                Assert.Equal(groups.Select(g => g.Min()).ToArray(), Values(x.Min(ax, keepDim: true)));
                Assert.Equal(dtype, x.Sum(ax).DType);
            }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    [InlineData(DType.I64)]
    [InlineData(DType.BF16)]
    public void ArgMaxFirstIndexOfMax(DType dtype)
    {
        foreach (var shape in new[] { new[] { 7, 13 }, [2, 3, 4, 5], [5], [300, 129] })
            foreach (var (layout, x) in Inputs(shape, dtype, 9))
                for (int axis = 0; axis < shape.Length; axis++)
                {
                    // Values rounded to a few levels so that ties occur: the first index must win.
                    var xr = Make(Values(x).Select(v => Math.Round(v / 2)).ToArray(), shape, dtype);
                    var groups = Groups(Values(xr), shape, [axis]);
                    var expected = groups.Select(g => (double)g.IndexOf(g.Max())).ToArray();
                    var r = xr.ArgMax(axis);
                    Assert.Equal(DType.I64, r.DType);
                    Assert.Equal(shape.Where((_, i) => i != axis).ToArray(), r.Shape);
                    Assert.Equal(expected, Values(r));
                }
    }

    [Fact]
    public void NaNPropagatesThroughMaxMinAndArgMax()
    {
        var x = Tensor.FromArray([1f, float.NaN, 3f, float.NaN, 2f, 0f], [2, 3]);
        Assert.True(Values(x.Max(1)).All(double.IsNaN));
        Assert.True(Values(x.Min(1)).All(double.IsNaN));
        Assert.Equal(new long[] { 1, 0 }, x.ArgMax(1).ToArray<long>());
        var big = Tensor.Ones([1000]);
        var withNaN = Tensor.Cat([big, Tensor.FromArray([float.NaN]), big]);
        Assert.True(float.IsNaN(withNaN.Max().ToArray<float>()[0]));
        Assert.Equal(1000L, withNaN.ArgMax(0).ToArray<long>()[0]);
    }

    [Fact]
    public void LargeFloat32SumIsAccurate()
    {
        // 4M copies of 0.1f: a naive float32 running sum drifts by percents; blocked SIMD + double keeps ~1e-7.
        const int n = 1 << 22;
        var x = Tensor.Full([n], 0.1);
        double expected = n * (double)0.1f;
        Assert.Equal(expected, x.Sum().Item(), expected * 1e-7);
        Assert.Equal((double)0.1f, x.Mean().Item(), 1e-7);
        // Column direction: (N, C) summed over N accumulates rows in double.
        var cols = Tensor.Full([1 << 16, 20], 0.1);
        foreach (double s in Values(cols.Sum(0))) Assert.Equal((1 << 16) * (double)0.1f, s, 1e-7 * (1 << 16));
    }

    [Fact]
    public void EmptyReductions()
    {
        var x = Tensor.Zeros([0, 3]);
        Assert.Equal(new double[] { 0, 0, 0 }, Values(x.Sum(0)));
        Assert.True(Values(x.Mean(0)).All(double.IsNaN));
        Assert.Equal(new[] { 0 }, x.Sum(1).Shape);
        Assert.Throws<ArgumentException>(() => x.Max(0));
    }

    [Fact]
    public void HalfTypesReduceInFloat32()
    {
        var x = Random([7, 13], 4, DType.BF16);
        var groups = Groups(Values(x), [7, 13], [1]);
        var expected = groups.Select(g => (double)BFloat16.FromFloat((float)g.Sum()).ToFloat()).ToArray();
        Assert.Equal(expected, Values(x.Sum(1)));
        Assert.Equal(DType.BF16, x.Sum(1).DType);
    }
}
