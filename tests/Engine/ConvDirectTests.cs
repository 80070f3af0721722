using ManagedTensor.Cpu;
using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>
/// The direct (implicit-GEMM) float convolution of CpuConvDirect against the im2col + GEMM path, for each
/// micro-kernel this CPU can run, at shapes that are multiples of nothing: channels around the 8 x 48, 12 x 32
/// and 6 x 16 tiles, odd image sizes, padding 0/1/2 and asymmetric, kernels 1x1, 1x3, 3x3, 5x5, K past one KC
/// block, strides 2 (rows long enough for the vector phase split) and (2, 3), groups, batch 1 (one image cut
/// between threads) and 3 (images in chunks). ConvTests checks both paths, through the op registry, against
/// float64 loops and finite differences.
/// </summary>
public class ConvDirectTests
{
    /// <summary>x (N, C, H, W), w (O, C/groups, KH, KW), padding (PH, PW), strides (SH, SW).</summary>
    public sealed record Case(string Name, int N, int C, int H, int W, int O, int KH, int KW, int PH, int PW, int Groups = 1, int SH = 1, int SW = 1)
    {
        public Conv2dAttrs A => new(SH, SW, PH, PW, 1, 1, Groups);
        public int OH => (H + 2 * PH - KH) / SH + 1;
        public int OW => (W + 2 * PW - KW) / SW + 1;
        public override string ToString() => Name;
    }

    private static readonly Case[] AllCases =
    [
        new("3x3 pad 1, C=3", 1, 3, 7, 9, 5, 3, 3, 1, 1),
        new("3x3 pad 0, batch 3", 3, 5, 11, 6, 13, 3, 3, 0, 0),
        new("5x5 pad 2, groups 2", 2, 4, 9, 10, 6, 5, 5, 2, 2, 2),
        new("1x3 pad (0, 1)", 1, 7, 5, 13, 14, 1, 3, 0, 1),
        new("3x3 pad 2, O=33", 3, 2, 6, 7, 33, 3, 3, 2, 2),
        new("3x3 K=270 > KC", 1, 30, 6, 5, 14, 3, 3, 1, 1),
        new("one image on all threads", 1, 16, 20, 23, 20, 3, 3, 1, 1),
        new("pad 3 > KH-1", 2, 2, 5, 6, 3, 3, 3, 3, 3),
        new("1x1, batch 3", 3, 19, 7, 9, 21, 1, 1, 0, 0),
        new("1x1 stride 2", 1, 6, 9, 8, 10, 1, 1, 0, 0, SH: 2, SW: 2),
        new("C blocks of 26 rows, batch 2", 2, 2, 40, 60, 40, 3, 3, 1, 1),
        new("3x3 stride 2 pad 1, odd", 3, 3, 11, 9, 17, 3, 3, 1, 1, SH: 2, SW: 2),
        new("5x5 stride 2 pad 2, even", 1, 5, 10, 12, 9, 5, 5, 2, 2, SH: 2, SW: 2),
        new("stride 2 pad 1, rows of 70", 1, 2, 5, 70, 3, 3, 3, 1, 1, SH: 2, SW: 2),
        new("stride 2 pad 0, rows of 67", 2, 3, 4, 67, 5, 3, 3, 0, 0, SH: 2, SW: 2),
        new("3x3 strides (2, 3) pad 0, groups 2", 2, 4, 9, 13, 6, 3, 3, 0, 0, Groups: 2, SH: 2, SW: 3),
    ];

    public static TheoryData<int, string> Cases()
    {
        var data = new TheoryData<int, string>();
        foreach (var isa in new[] { SgemmIsa.Avx2, SgemmIsa.Avx512 })
            foreach (var c in AllCases) data.Add((int)isa, c.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DirectMatchesIm2Col(int which, string name)
    {
        var isa = (SgemmIsa)which;
        if (isa > Sgemm.Best) return; // this CPU cannot run that kernel
        var k = AllCases.Single(c => c.Name == name);
        var x = Nn.Random([k.N, k.C, k.H, k.W], 1, DType.F32);
        var w = Nn.Random([k.O, k.C / k.Groups, k.KH, k.KW], 2, DType.F32);
        var b = Nn.Random([k.O], 3, DType.F32);
        var dy = Nn.Random([k.N, k.O, k.OH, k.OW], 4, DType.F32);
        double tol = 1e-5 * Math.Sqrt(k.C / k.Groups * k.KH * k.KW);

        Tensor Forward(SgemmIsa path)
        {
            var y = Tensor.Zeros([k.N, k.O, k.OH, k.OW]);
            CpuConv.Conv2d(x, w, b, y, k.A, path);
            return y;
        }
        Tensor Dx(SgemmIsa path)
        {
            var dx = Tensor.Full([k.N, k.C, k.H, k.W], 7f); // the op must overwrite, not add
            CpuConv.BackwardInput(dy, w, dx, k.A, path);
            return dx;
        }
        Tensor Dw(SgemmIsa path)
        {
            var dw = Tensor.Full([k.O, k.C / k.Groups, k.KH, k.KW], 7f);
            CpuConv.BackwardWeight(dy, x, dw, k.A, path);
            return dw;
        }
        TestUtil.AssertClose(Forward(SgemmIsa.Scalar), Forward(isa), 1e-5, tol, $"{isa} forward {name}");
        TestUtil.AssertClose(Dx(SgemmIsa.Scalar), Dx(isa), 1e-5, tol, $"{isa} dx {name}");
        TestUtil.AssertClose(Dw(SgemmIsa.Scalar), Dw(isa), 1e-5, 10 * tol, $"{isa} dw {name}");
    }

    [Fact]
    public void WhichConvolutionsTakeTheDirectPath()
    {
        CpuConv.Geometry G(Conv2dAttrs a, int k = 3) => new(1, 4, 9, 9, 4, k, k, 7, 7, a);
        Assert.True(CpuConvDirect.Applies(G(new(1, 1, 1, 1)), SgemmIsa.Avx2));
        Assert.True(CpuConvDirect.Applies(G(new(2, 2, 1, 1)), SgemmIsa.Avx2));
        Assert.True(CpuConvDirect.AppliesBackwardInput(G(new(2, 2, 1, 1)), SgemmIsa.Avx2)); // by stride phases
        Assert.False(CpuConvDirect.Applies(G(new(1, 1, 1, 1)), SgemmIsa.Scalar));
        Assert.False(CpuConvDirect.Applies(G(new(1, 1, 2, 2, 2, 2)), SgemmIsa.Avx2));
        Assert.True(CpuConvDirect.AppliesBackwardInput(G(new(1, 1, 0, 0), k: 1), SgemmIsa.Avx2));
        Assert.True(CpuConvDirect.AppliesBackwardInput(G(new(1, 1, 3, 3)), SgemmIsa.Avx2)); // dy read from inside its padding
        Assert.False(CpuConvDirect.AppliesBackwardInput(G(new(2, 2, 1, 1, 2, 2)), SgemmIsa.Avx2)); // dilation: im2col
    }
}
