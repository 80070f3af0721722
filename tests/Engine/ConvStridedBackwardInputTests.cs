using ManagedTensor.Cpu;
using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>
/// The direct path's backward input of strided convolutions (stride phases, CpuConvDirectBackwardInput.cs) against
/// im2col + GEMM + col2im (CpuConv with SgemmIsa.Scalar), for each micro-kernel this CPU runs: YOLOv8n's stride-2 3x3
/// downsampling at even and odd sizes, 1x1 stride 2 (a phase without taps), pad 0 and pad 2 (a phase whose dy window
/// starts inside dy), strides (2, 1) and (1, 2), a kernel smaller than a stride of 3, an image of one row (phases
/// without entries), groups and depthwise, and one image cut between the threads (in blocks of a few rows).
/// ConvDirectTests covers the same path at its own strided shapes (with the forward and backward weight).
/// </summary>
public class ConvStridedBackwardInputTests
{
    /// <summary>x (N, C, H, W), w (O, C/groups, KH, KW), padding (PH, PW), strides (SH, SW).</summary>
    public sealed record Case(string Name, int N, int C, int H, int W, int O, int KH, int KW, int PH, int PW, int SH, int SW, int Groups = 1)
    {
        public Conv2dAttrs A => new(SH, SW, PH, PW, 1, 1, Groups);
        public int OH => (H + 2 * PH - KH) / SH + 1;
        public int OW => (W + 2 * PW - KW) / SW + 1;
        public override string ToString() => Name;
    }

    private static readonly Case[] AllCases =
    [
        new("yolo downsample 3x3 s2 p1, even", 2, 16, 12, 10, 32, 3, 3, 1, 1, 2, 2),
        new("3x3 s2 p1, odd", 1, 5, 9, 7, 11, 3, 3, 1, 1, 2, 2),
        new("1x1 s2 p0, odd", 2, 7, 7, 5, 9, 1, 1, 0, 0, 2, 2),
        new("3x3 s2 p0, odd", 1, 4, 11, 8, 6, 3, 3, 0, 0, 2, 2),
        new("3x3 s2 p2", 1, 3, 8, 9, 5, 3, 3, 2, 2, 2, 2),
        new("3x3 strides (2, 1) p1", 2, 3, 9, 6, 7, 3, 3, 1, 1, 2, 1),
        new("3x1 strides (1, 2) p (1, 0)", 1, 4, 6, 9, 3, 3, 1, 1, 0, 1, 2),
        new("2x2 s3 p1, kernel < stride", 1, 3, 10, 11, 4, 2, 2, 1, 1, 3, 3),
        new("3x3 s2 p1, one row", 2, 3, 1, 5, 4, 3, 3, 1, 1, 2, 2),
        new("3x3 s2 p1, groups 2", 2, 6, 9, 10, 4, 3, 3, 1, 1, 2, 2, Groups: 2),
        new("3x3 s2 p1, depthwise", 1, 5, 8, 7, 5, 3, 3, 1, 1, 2, 2, Groups: 5),
        new("3x3 s2 p1, one image on all threads", 1, 24, 40, 38, 32, 3, 3, 1, 1, 2, 2),
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
    public void PhasesMatchIm2Col(int which, string name)
    {
        var isa = (SgemmIsa)which;
        if (isa > Sgemm.Best) return; // this CPU cannot run that kernel
        var k = AllCases.Single(c => c.Name == name);
        var g = new CpuConv.Geometry(k.N, k.C, k.H, k.W, k.O, k.KH, k.KW, k.OH, k.OW, k.A);
        Assert.True(CpuConvDirect.AppliesBackwardInput(g, isa), $"{name} should take the direct path");
        var w = Nn.Random([k.O, k.C / k.Groups, k.KH, k.KW], 2, DType.F32);
        var dy = Nn.Random([k.N, k.O, k.OH, k.OW], 4, DType.F32);
        Tensor Dx(SgemmIsa path)
        {
            var dx = Tensor.Full([k.N, k.C, k.H, k.W], 7f); // the op must overwrite, not add
            CpuConv.BackwardInput(dy, w, dx, k.A, path);
            return dx;
        }
        var expected = Dx(SgemmIsa.Scalar);
        TestUtil.AssertClose(expected, Dx(isa), 1e-5, 1e-5 * Math.Sqrt(k.O / k.Groups * k.KH * k.KW), $"{isa} dx {name}");
    }

    /// <summary>A 1x1 stride-2 conv's dx is 0 at every odd row or column (no tap reads them), written over what was there.</summary>
    [Fact]
    public void EntriesNoTapReadsAreZero()
    {
        if (Sgemm.Best == SgemmIsa.Scalar) return;
        var w = Nn.Random([3, 2, 1, 1], 2, DType.F32);
        var dy = Nn.Random([1, 3, 3, 3], 4, DType.F32);
        var dx = Tensor.Full([1, 2, 5, 6], 7f);
        CpuConv.BackwardInput(dy, w, dx, new Conv2dAttrs(2, 2, 0, 0), Sgemm.Best);
        var v = dx.ToDoubleArray();
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < 5; i++)
                for (int j = 0; j < 6; j++)
                {
                    double d = v[(c * 5 + i) * 6 + j];
                    if (i % 2 == 1 || j % 2 == 1) Assert.Equal(0.0, d);
                    else Assert.NotEqual(0.0, d);
                }
    }
}
