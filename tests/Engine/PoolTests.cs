using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>Max / average pooling and nearest upsampling against float64 window loops, gradients by finite differences.</summary>
public class PoolTests
{
    public static TheoryData<DType, int, int, int, int, int> Cases()
    {
        // dtype, N*C planes (as N=2, C=planes/2 or N=1), kernel, stride, padding, and the input is 7 x 9.
        var data = new TheoryData<DType, int, int, int, int, int>();
        foreach (var t in Nn.FloatTypes)
        {
            data.Add(t, 1, 3, 2, 2, 0);
            data.Add(t, 3, 3, 3, 2, 1);
            data.Add(t, 1, 1, 3, 1, 1);
            data.Add(t, 2, 5, 1, 1, 0);
            data.Add(t, 2, 2, 5, 2, 2);
        }
        return data;
    }

    private const int H = 7, W = 9;

    /// <summary>For each output (plane, i, j): the flat input positions ih*W + iw of its in-bounds window.</summary>
    private static List<int>[] Windows(int oh, int ow, Pool2dAttrs p)
    {
        var result = new List<int>[oh * ow];
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
            {
                var list = result[i * ow + j] = [];
                for (int kh = 0; kh < p.KernelH; kh++)
                    for (int kw = 0; kw < p.KernelW; kw++)
                    {
                        int ih = i * p.StrideH - p.PadH + kh, iw = j * p.StrideW - p.PadW + kw;
                        if (ih >= 0 && ih < H && iw >= 0 && iw < W) list.Add(ih * W + iw);
                    }
            }
        return result;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MaxPoolMatchesReference(DType dtype, int n, int c, int k, int s, int pad)
    {
        var p = new Pool2dAttrs(k, k, s, s, pad, pad);
        var x = Nn.Random([n, c, H, W], 1 + k, dtype);
        x.RequiresGrad = true; // so the node keeps argmax
        var y = x.MaxPool2d(p);
        int oh = y.Shape[2], ow = y.Shape[3];
        Assert.Equal((H + 2 * pad - k) / s + 1, oh);
        var xv = Nn.Values(x);
        var win = Windows(oh, ow, p);
        var expected = new double[n * c * oh * ow];
        var expectedArg = new double[expected.Length];
        for (int plane = 0; plane < n * c; plane++)
            for (int o = 0; o < oh * ow; o++)
            {
                int best = win[o].MaxBy(q => xv[plane * H * W + q]); // first maximum, as the kernel
                expected[plane * oh * ow + o] = xv[plane * H * W + best];
                expectedArg[plane * oh * ow + o] = best;
            }
        Nn.Close(expected, y, "max pool");
        Assert.Equal(expectedArg, Nn.Values(y.Node!.Saved[0]));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AvgPoolCountsPaddingAsZeros(DType dtype, int n, int c, int k, int s, int pad)
    {
        var p = new Pool2dAttrs(k, k, s, s, pad, pad);
        var x = Nn.Random([n, c, H, W], 11 + k, dtype);
        var y = x.AvgPool2d(p);
        int oh = y.Shape[2], ow = y.Shape[3];
        var xv = Nn.Values(x);
        var win = Windows(oh, ow, p);
        var expected = new double[n * c * oh * ow];
        for (int plane = 0; plane < n * c; plane++)
            for (int o = 0; o < oh * ow; o++)
                expected[plane * oh * ow + o] = win[o].Sum(q => xv[plane * H * W + q]) / (k * k);
        Nn.Close(expected, y, "avg pool");
    }

    [Theory]
    [InlineData(2, 2, 0)]
    [InlineData(3, 2, 1)]
    [InlineData(3, 1, 1)] // overlapping windows: one input can be the maximum of several
    public void PoolBackwardMatchesFiniteDifferences(int k, int s, int pad)
    {
        var p = new Pool2dAttrs(k, k, s, s, pad, pad);
        int[] shape = [2, 1, H, W];
        // Distinct values far apart (a shuffled ramp), so no window has a near tie that a 1e-6 step could flip.
        var rng = new Random(21);
        var xv = Enumerable.Range(0, 2 * H * W).Select(i => i * 0.01).OrderBy(_ => rng.Next()).ToArray();
        var x = Nn.Make(xv, shape, DType.F64);
        x.RequiresGrad = true;
        var y = x.MaxPool2d(p);
        var g = TestUtil.RandomValues(y.Numel, 22);
        var dy = Nn.Make(g, y.Shape, DType.F64);

        var dx = Tensor.MaxPool2dBackward(dy, y.Node!.Saved[0], shape, p);
        Nn.GradClose(Nn.NumericGrad(xv, xs => Nn.Project(Nn.Make(xs, shape, DType.F64).MaxPool2d(p), g)), dx, "max pool dx");

        var da = Tensor.AvgPool2dBackward(dy, shape, p);
        Nn.GradClose(Nn.NumericGrad(xv, xs => Nn.Project(Nn.Make(xs, shape, DType.F64).AvgPool2d(p), g)), da, "avg pool dx");
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void MaxPoolBackwardSumsIntoArgmaxPositions(DType dtype)
    {
        // 3x3 windows with stride 1 over a plane whose maximum is in the middle: every window picks it.
        var x = Nn.Make([0, 0, 0, 0, 9, 0, 0, 0, 0], [1, 1, 3, 3], dtype);
        x.RequiresGrad = true;
        var p = new Pool2dAttrs(3, 3, 1, 1, 1, 1);
        var y = x.MaxPool2d(p);
        Assert.All(Nn.Values(y), v => Assert.Equal(9.0, v));
        var dx = Tensor.MaxPool2dBackward(Nn.Make(Enumerable.Repeat(1.0, 9).ToArray(), [1, 1, 3, 3], dtype), y.Node!.Saved[0], [1, 1, 3, 3], p);
        Assert.Equal([0.0, 0, 0, 0, 9, 0, 0, 0, 0], Nn.Values(dx));
    }

    [Fact]
    public void MaxPoolPropagatesNaNAndHandlesAllNegativeInfinity()
    {
        var x = Nn.Make([1, double.NaN, 3, 4, double.NegativeInfinity, double.NegativeInfinity, double.NegativeInfinity, double.NegativeInfinity], [1, 2, 2, 2], DType.F32);
        x.RequiresGrad = true;
        var y = x.MaxPool2d(2);
        var v = Nn.Values(y);
        Assert.True(double.IsNaN(v[0]));
        Assert.Equal(double.NegativeInfinity, v[1]);
        Assert.Equal([1.0, 0], Nn.Values(y.Node!.Saved[0]));
    }

    [Theory]
    [InlineData(DType.F32, 1)]
    [InlineData(DType.F32, 2)]
    [InlineData(DType.F64, 3)]
    public void UpsampleRepeatsPixelsAndItsBackwardSumsBlocks(DType dtype, int s)
    {
        int[] shape = [2, 3, 3, 5];
        var x = Nn.Random(shape, 31, dtype);
        var y = x.UpsampleNearest2d(s);
        Assert.Equal([2, 3, 3 * s, 5 * s], y.Shape);
        var xv = Nn.Values(x);
        var expected = new double[y.Numel];
        for (int i = 0; i < expected.Length; i++)
        {
            int ow = i % (5 * s), oh = i / (5 * s) % (3 * s), plane = i / (15 * s * s);
            expected[i] = xv[(plane * 3 + oh / s) * 5 + ow / s];
        }
        Nn.Close(expected, y, "upsample");

        var gv = TestUtil.RandomValues(y.Numel, 32);
        var dx = Tensor.UpsampleNearest2dBackward(Nn.Make(gv, y.Shape, dtype), s);
        var dxRef = new double[x.Numel];
        for (int i = 0; i < gv.Length; i++)
        {
            int ow = i % (5 * s), oh = i / (5 * s) % (3 * s), plane = i / (15 * s * s);
            dxRef[(plane * 3 + oh / s) * 5 + ow / s] += dtype == DType.F32 ? (float)gv[i] : gv[i];
        }
        Nn.Close(dxRef, dx, "upsample backward");
    }

    [Fact]
    public void UpsampleBackwardMatchesFiniteDifferences()
    {
        int[] shape = [1, 2, 2, 3];
        var xv = TestUtil.RandomValues(12, 33);
        var g = TestUtil.RandomValues(12 * 4, 34);
        var dx = Tensor.UpsampleNearest2dBackward(Nn.Make(g, [1, 2, 4, 6], DType.F64), 2);
        Nn.GradClose(Nn.NumericGrad(xv, xs => Nn.Project(Nn.Make(xs, shape, DType.F64).UpsampleNearest2d(2), g)), dx, "upsample dx");
    }

    [Fact]
    public void ManyPlanesRunInParallelChunks()
    {
        // 16 x 32 planes of 32 x 32: several chunks; compared with the same op on each plane alone.
        var x = Nn.Random([16, 32, 32, 32], 41, DType.F32);
        var p = new Pool2dAttrs(2, 2, 2, 2, 0, 0);
        var all = Nn.Values(x.AvgPool2d(p));
        var xv = Nn.Values(x);
        for (int plane = 0; plane < 16 * 32; plane += 37)
        {
            var single = Nn.Make(xv.Skip(plane * 1024).Take(1024).ToArray(), [1, 1, 32, 32], DType.F32).AvgPool2d(p);
            Assert.Equal(Nn.Values(single), all.Skip(plane * 256).Take(256));
        }
    }
}
