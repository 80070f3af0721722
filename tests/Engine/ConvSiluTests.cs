using ManagedTensor.Cpu;
using ManagedTensor.Models.Detection.Yolo;
using ManagedTensor.Tests.Autograd;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Engine;

/// <summary>Conv2dSilu (YOLO's folded conv block as one op): every CPU path against Conv2d then Silu, its gradient, and in the block.</summary>
public class ConvSiluTests
{
    [Theory]
    [InlineData(2, 3, 9, 13, 5, 3, 1, 1, 1, true)]    // 3x3 stride 1, rows of 13 (SIMD body and tail)
    [InlineData(1, 4, 11, 10, 6, 3, 2, 1, 2, true)]   // 3x3 stride 2, groups 2
    [InlineData(2, 5, 7, 7, 3, 1, 1, 0, 1, false)]    // 1x1 without a bias
    public void EveryPathMatchesConvThenSilu(int n, int c, int h, int w, int o, int k, int stride, int pad, int groups, bool withBias)
    {
        var attrs = new Conv2dAttrs(stride, stride, pad, pad, Groups: groups);
        var x = RandomTensor([n, c, h, w], seed: 1, DType.F32).MulScalar(2);
        var weight = RandomTensor([o, c / groups, k, k], seed: 2, DType.F32);
        var bias = withBias ? RandomTensor([o], seed: 3, DType.F32) : null;
        var expected = Tensor.Conv2d(x, weight, bias, attrs).Silu();
        AssertClose(expected, Tensor.Conv2dSilu(x, weight, bias, attrs), 1e-5, 1e-5);               // the best direct micro-kernel
        var y = Tensor.Full(expected.Shape, 7f);                                                        // the kernel must overwrite
        CpuConv.Conv2d(x, weight, bias ?? x.None(), y, attrs, SgemmIsa.Scalar, silu: true);            // im2col + GEMM
        AssertClose(expected, y, 1e-5, 1e-5);
        var x64 = x.To(DType.F64);                                                                       // float64: im2col
        AssertClose(expected.To(DType.F64), Tensor.Conv2dSilu(x64, weight.To(DType.F64), bias?.To(DType.F64), attrs), 1e-5, 1e-5);
        var composite = OpRegistry.Get(ConvSiluOps.Conv2dSilu).Fallback!([x, weight, bias ?? x.None()], attrs)[0];
        AssertClose(expected, composite, 1e-6, 1e-6);
    }

    [Fact]
    public void GradientMatchesFiniteDifferences()
        => GradCheck.Check(t => Tensor.Conv2dSilu(t[0], t[1], t[2], new Conv2dAttrs(2, 2, 1, 1)),
            [RandomTensor([1, 2, 5, 6], seed: 11), RandomTensor([3, 2, 3, 3], seed: 12), RandomTensor([3], seed: 13)], rtol: 1e-4, atol: 1e-6);

    [Fact]
    public void NamesTheBadInput()
    {
        var bad = Assert.Throws<ArgumentException>(() => Tensor.Conv2dSilu(Tensor.Zeros([1, 3, 5, 5]), Tensor.Zeros([4, 2, 3, 3]), null, new Conv2dAttrs(1, 1, 1, 1)));
        Assert.Contains("Conv2dSilu: x", bad.Message);
    }

    [Fact]
    public void AFoldedYoloConvBlockGivesWhatTheUnfoldedOneGivesInEval()
    {
        var block = new ConvBnSilu(3, 5, 3, new Generator(1), Device.Cpu, stride: 2);
        block.Forward(Tensor.Randn([2, 3, 9, 9], new Generator(2)));   // running statistics away from 0 and 1
        block.Eval();
        var x = Tensor.Randn([1, 3, 11, 7], new Generator(3));
        var expected = block.Forward(x);
        block.Fuse();
        AssertClose(expected, block.Forward(x), 1e-5, 1e-5);
    }
}
