using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>Conv2d and its two backward ops against direct float64 loops, and against finite differences.</summary>
public class ConvTests
{
    /// <summary>One convolution: x (N, C, H, W), w (O, C/groups, KH, KW).</summary>
    public sealed record Case(string Name, int N, int C, int H, int W, int O, int KH, int KW, Conv2dAttrs A, bool Bias)
    {
        public int[] XShape => [N, C, H, W];
        public int[] WShape => [O, C / A.Groups, KH, KW];
        public int OH => (H + 2 * A.PadH - A.DilationH * (KH - 1) - 1) / A.StrideH + 1;
        public int OW => (W + 2 * A.PadW - A.DilationW * (KW - 1) - 1) / A.StrideW + 1;
        public int[] YShape => [N, O, OH, OW];
        public override string ToString() => Name;
    }

    private static Conv2dAttrs A(int stride = 1, int pad = 0, int dilation = 1, int groups = 1) => new(stride, stride, pad, pad, dilation, dilation, groups);

    private static readonly Case[] AllCases =
    [
        new("3x3 pad 1", 2, 3, 7, 9, 4, 3, 3, A(pad: 1), true),
        new("3x3 stride 2 groups 2", 1, 4, 7, 9, 6, 3, 3, A(stride: 2, pad: 1, groups: 2), false),
        new("3x3 dilation 2", 2, 2, 7, 9, 3, 3, 3, A(pad: 2, dilation: 2), true),
        new("depthwise", 1, 4, 8, 8, 4, 3, 3, A(pad: 1, groups: 4), true),
        new("depthwise x2", 2, 4, 6, 5, 8, 3, 3, A(pad: 1, groups: 4), false),
        new("1x1", 5, 5, 7, 9, 3, 1, 1, A(), true),
        new("1x1 stride 2 groups 2", 1, 4, 7, 9, 2, 1, 1, A(stride: 2, groups: 2), false),
        new("5x5 stride 2 pad 2", 2, 3, 9, 11, 2, 5, 5, A(stride: 2, pad: 2), true),
        new("3x5 mixed strides", 2, 2, 7, 9, 3, 3, 5, new Conv2dAttrs(2, 1, 1, 0, 1, 2, 1), true),
        new("1 channel 1x1 image", 1, 1, 1, 1, 2, 1, 1, A(), true),
        new("batch of 8 in chunks", 8, 16, 12, 12, 16, 3, 3, A(pad: 1), true),
    ];

    public static TheoryData<DType, string> Cases()
    {
        var data = new TheoryData<DType, string>();
        foreach (var t in Nn.FloatTypes)
            foreach (var c in AllCases) data.Add(t, c.Name);
        return data;
    }

    private static Case Get(string name) => AllCases.Single(c => c.Name == name);

    /// <summary>
    /// Calls visit(yIndex, xIndex, wIndex) for every product x * w that contributes to an output; the
    /// forward, backward-input and backward-weight references are all this one loop.
    /// </summary>
    private static void ForEachTap(Case k, Action<int, int, int> visit)
    {
        var a = k.A;
        int cg = k.C / a.Groups, og = k.O / a.Groups;
        for (int n = 0; n < k.N; n++)
            for (int o = 0; o < k.O; o++)
                for (int oh = 0; oh < k.OH; oh++)
                    for (int ow = 0; ow < k.OW; ow++)
                    {
                        int yi = ((n * k.O + o) * k.OH + oh) * k.OW + ow;
                        for (int c = 0; c < cg; c++)
                            for (int kh = 0; kh < k.KH; kh++)
                                for (int kw = 0; kw < k.KW; kw++)
                                {
                                    int ih = oh * a.StrideH - a.PadH + kh * a.DilationH, iw = ow * a.StrideW - a.PadW + kw * a.DilationW;
                                    if (ih < 0 || ih >= k.H || iw < 0 || iw >= k.W) continue;
                                    int ci = o / og * cg + c;
                                    visit(yi, ((n * k.C + ci) * k.H + ih) * k.W + iw, ((o * cg + c) * k.KH + kh) * k.KW + kw);
                                }
                    }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardMatchesDirectLoops(DType dtype, string name)
    {
        var k = Get(name);
        var x = Nn.Random(k.XShape, 1, dtype);
        var w = Nn.Random(k.WShape, 2, dtype);
        var b = k.Bias ? Nn.Random([k.O], 3, dtype) : null;
        var y = Tensor.Conv2d(x, w, b, k.A);
        Assert.Equal(k.YShape, y.Shape);

        var xv = Nn.Values(x);
        var wv = Nn.Values(w);
        var expected = new double[Nn.Numel(k.YShape)];
        if (b is not null)
        {
            var bv = Nn.Values(b);
            for (int i = 0; i < expected.Length; i++) expected[i] = bv[i / (k.OH * k.OW) % k.O];
        }
        ForEachTap(k, (yi, xi, wi) => expected[yi] += xv[xi] * wv[wi]);
        Nn.Close(expected, y, $"conv {name}", scale: 10);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BackwardOpsMatchDirectLoops(DType dtype, string name)
    {
        var k = Get(name);
        var x = Nn.Random(k.XShape, 4, dtype);
        var w = Nn.Random(k.WShape, 5, dtype);
        var dy = Nn.Random(k.YShape, 6, dtype);
        var dx = Tensor.Conv2dBackwardInput(dy, w, k.XShape, k.A);
        var dw = Tensor.Conv2dBackwardWeight(dy, x, k.WShape, k.A);

        var xv = Nn.Values(x);
        var wv = Nn.Values(w);
        var dyv = Nn.Values(dy);
        var dxRef = new double[xv.Length];
        var dwRef = new double[wv.Length];
        ForEachTap(k, (yi, xi, wi) =>
        {
            dxRef[xi] += dyv[yi] * wv[wi];
            dwRef[wi] += dyv[yi] * xv[xi];
        });
        Nn.Close(dxRef, dx, $"conv dx {name}", scale: 10);
        Nn.Close(dwRef, dw, $"conv dw {name}", scale: 10);
    }

    [Theory]
    [InlineData("3x3 stride 2 groups 2")]
    [InlineData("3x3 dilation 2")]
    [InlineData("depthwise x2")]
    [InlineData("1x1")]
    [InlineData("3x5 mixed strides")]
    public void GradientsMatchFiniteDifferences(string name)
    {
        var k = Get(name);
        var xv = TestUtil.RandomValues(Nn.Numel(k.XShape), 7);
        var wv = TestUtil.RandomValues(Nn.Numel(k.WShape), 8);
        var g = TestUtil.RandomValues(Nn.Numel(k.YShape), 9);
        double Loss(double[] xs, double[] ws)
            => Nn.Project(Tensor.Conv2d(Nn.Make(xs, k.XShape, DType.F64), Nn.Make(ws, k.WShape, DType.F64), null, k.A), g);

        var dy = Nn.Make(g, k.YShape, DType.F64);
        var dx = Tensor.Conv2dBackwardInput(dy, Nn.Make(wv, k.WShape, DType.F64), k.XShape, k.A);
        var dw = Tensor.Conv2dBackwardWeight(dy, Nn.Make(xv, k.XShape, DType.F64), k.WShape, k.A);
        Nn.GradClose(Nn.NumericGrad(xv, xs => Loss(xs, wv)), dx, $"conv dx {name}");
        Nn.GradClose(Nn.NumericGrad(wv, ws => Loss(xv, ws)), dw, $"conv dw {name}");
    }

    [Fact]
    public void BackwardWeightIsDeterministic()
    {
        var k = Get("batch of 8 in chunks");
        var x = Nn.Random(k.XShape, 10, DType.F32);
        var dy = Nn.Random(k.YShape, 11, DType.F32);
        var first = Tensor.Conv2dBackwardWeight(dy, x, k.WShape, k.A).ToArray<float>();
        for (int i = 0; i < 2; i++)
            Assert.Equal(first, Tensor.Conv2dBackwardWeight(dy, x, k.WShape, k.A).ToArray<float>());
    }
}
