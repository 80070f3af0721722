using ManagedTensor.Nn;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Autograd;

/// <summary>Nn.BatchNorm2d: running statistics as PyTorch keeps them, eval mode, buffers in the state dict, folding into a conv.</summary>
public class BatchNorm2dModuleTests
{
    [Fact]
    public void RunningStatisticsFollowPyTorchsUpdateAndEvalUsesThem()
    {
        var bn = new BatchNorm2d(2, Device.Cpu, eps: 1e-5, momentum: 0.1);
        // Channel 0 holds 1, 2, 3, 4 (mean 2.5, unbiased variance 5/3); channel 1 holds 10 four times (variance 0).
        var x = Tensor.FromArray(new float[] { 1, 2, 10, 10, 3, 4, 10, 10 }, [2, 2, 1, 2]);
        var y = bn.Forward(x);
        AssertClose(new double[] { 0.25, 1.0 }, bn.RunningMean.ToDoubleArray(), 1e-6, 1e-6);      // 0.9 * 0 + 0.1 * mean
        AssertClose(new double[] { 0.9 + 0.1 * 5.0 / 3, 0.9 }, bn.RunningVar.ToDoubleArray(), 1e-5, 1e-5); // 0.9 * 1 + 0.1 * var
        Assert.Equal(-1.5 / Math.Sqrt(1.25 + 1e-5), y.ToDoubleArray()[0], 5);

        bn.Eval();
        var e = bn.Forward(x).ToDoubleArray();
        Assert.Equal((1 - 0.25) / Math.Sqrt(0.9 + 0.5 / 3 + 1e-5), e[0], 5);
        Assert.Equal((10 - 1.0) / Math.Sqrt(0.9 + 1e-5), e[2], 4);
        Assert.Equal(["weight", "bias", "running_mean", "running_var"], bn.StateDict().Keys);
        Assert.Equal(2, bn.Parameters().Count()); // buffers are not trained
    }

    [Fact]
    public void FoldingIntoTheConvGivesTheSameOutputAsConvThenBatchNorm()
    {
        var gen = new Generator(7);
        var conv = new Conv2d(3, 4, 3, gen, Device.Cpu, stride: 2);
        var bn = new BatchNorm2d(4, Device.Cpu, eps: 1e-3, momentum: 0.5);
        bn.Forward(conv.Forward(Tensor.Randn([2, 3, 9, 9], gen)));        // some running statistics
        using (GradMode.NoGrad()) bn.Weight.CopyFrom_(Tensor.Rand([4], gen, 0.5, 2));
        bn.Eval();
        var x = Tensor.Randn([1, 3, 11, 7], gen);
        var expected = bn.Forward(conv.Forward(x));
        var (w, b) = bn.FoldInto(conv.Weight, conv.Bias);
        AssertClose(expected, Tensor.Conv2d(x, w, b, conv.Attrs), 1e-5, 1e-5);
    }

    [Fact]
    public void ADepthwiseConvIsAGroupedConvWithOneChannelPerGroup()
    {
        var gen = new Generator(3);
        var dw = new Conv2d(5, 5, 3, gen, Device.Cpu, groups: 5, bias: false);
        var x = Tensor.Randn([2, 5, 6, 7], gen);
        var y = dw.Forward(x).ToDoubleArray();
        // Channel 4 alone, through a single-channel conv with the same filter.
        var alone = Tensor.Conv2d(x.Narrow(1, 4, 1).Contiguous(), dw.Weight.Narrow(0, 4, 1).Contiguous(), null, padding: 1).ToDoubleArray();
        var ours = y.Where((_, i) => i / 42 % 5 == 4).ToArray();
        AssertClose(alone, ours, 1e-5, 1e-6);
    }
}
