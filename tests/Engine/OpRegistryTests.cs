using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Engine;

/// <summary>The op registry: declarations, kernel lookup, composite fallbacks and ops declared outside the enumeration.</summary>
public class OpRegistryTests
{
    [Fact]
    public void EveryBuiltInOpIsRegisteredUnderItsName()
    {
        foreach (var op in Enum.GetValues<Op>())
        {
            Assert.Equal(op, OpRegistry.Get(op).Op);
            Assert.Equal(op, OpRegistry.Find(op.ToString()));
        }
        Assert.Null(OpRegistry.Find("no such op"));
    }

    [Fact]
    public void BackwardRulesComeFromTheRegistry()
    {
        // Autograd adds the built-in rules before its first backward pass.
        var x = RandomTensor([3], 1);
        x.RequiresGrad = true;
        x.Exp().Sum().Backward();
        Assert.NotNull(OpRegistry.Get(Op.Exp).Backward);
        Assert.NotNull(OpRegistry.Get(Op.RmsNorm).Backward);
        Assert.Null(OpRegistry.Get(Op.ArgMax).Backward);
    }

    [Fact]
    public void RmsNormFallbackEqualsTheKernel()
    {
        var x = RandomTensor([5, 7], 2);
        var w = RandomTensor([7], 3);
        var attrs = new NormAttrs(1e-5);
        var kernel = Tensor.Apply(Op.RmsNorm, attrs, x, w);
        Assert.True(Tensor.HasKernel(Op.RmsNorm, Device.Cpu, attrs, x, w));
        var composite = OpRegistry.Get(Op.RmsNorm).Fallback!([x, w], attrs);
        AssertClose(kernel[0], composite[0], 1e-12, 1e-12, "y");
        AssertClose(kernel[1], composite[1], 1e-12, 1e-12, "rstd");
    }

    [Fact]
    public void AnOpWithoutAKernelForItsDTypeRunsItsFallback()
    {
        // The CPU's RMS norm kernel is F32/F64 only: BF16 runs the composite, through the same front end.
        var x = RandomTensor([4, 16], 4, DType.F32);
        var w = RandomTensor([16], 5, DType.F32);
        Assert.False(Tensor.HasKernel(Op.RmsNorm, Device.Cpu, new NormAttrs(1e-5), x.To(DType.BF16), w.To(DType.BF16)));
        var y16 = x.To(DType.BF16).RmsNorm(w.To(DType.BF16));
        Assert.Equal(DType.BF16, y16.DType);
        AssertClose(x.RmsNorm(w), y16.To(DType.F32), 2e-2, 2e-2, "bf16 through the fallback");
    }

    [Fact]
    public void TheFallbackIsDifferentiatedWhereItRuns()
    {
        // Recorded op by op: BF16 gradients come from mul/mean/rsqrt's rules, close to the F32 kernel's.
        var x32 = RandomTensor([3, 8], 6, DType.F32);
        var w32 = RandomTensor([8], 7, DType.F32);
        Tensor[] Grads(DType dtype)
        {
            var x = x32.To(dtype).Detach();
            var w = w32.To(dtype).Detach();
            x.RequiresGrad = w.RequiresGrad = true;
            (x.RmsNorm(w) * x.RmsNorm(w)).Sum().Backward();
            return [x.Grad!.To(DType.F32), w.Grad!.To(DType.F32)];
        }
        var reference = Grads(DType.F32);
        var fallback = Grads(DType.BF16);
        AssertClose(reference[0], fallback[0], 5e-2, 5e-2, "dx");
        AssertClose(reference[1], fallback[1], 5e-2, 5e-2, "dw");
    }

    [Fact]
    public void AnOpDeclaredOutsideTheEnumerationRunsWithItsCompositeAndRule()
    {
        // softplus(x) = log(1 + exp(x)), declared here with a fallback only: no backend has a kernel for it.
        var op = OpRegistry.Declare("test_softplus");
        Assert.True((int)op >= 1000);
        Assert.Equal(op, OpRegistry.Declare("test_softplus"));
        OpRegistry.Define(new OpDef(op, "test_softplus")
        {
            Inputs = ["x"],
            Shapes = (i, a) => [new(i[0].Shape, i[0].DType)],
            Fallback = (i, a) => [i[0].Exp().AddScalar(1).Log()],
        });
        var x = RandomTensor([6], 8);
        var y = Tensor.Apply(op, null, x)[0];
        AssertClose(x.Exp().AddScalar(1).Log(), y, 1e-12, 1e-12, "softplus");
        Autograd.GradCheck.Check(t => Tensor.Apply(op, null, t)[0], x);
        Assert.Contains(OpRegistry.All, d => d.Name == "test_softplus");
    }

    [Fact]
    public void AnOpWithNeitherKernelNorFallbackSaysSo()
    {
        var op = OpRegistry.Declare("test_nothing");
        OpRegistry.Define(new OpDef(op, "test_nothing") { Inputs = ["x"], Shapes = (i, a) => [new(i[0].Shape, i[0].DType)] });
        var e = Assert.Throws<NotSupportedException>(() => Tensor.Apply(op, null, RandomTensor([2], 9)));
        Assert.Contains("test_nothing", e.Message);
        Assert.Contains("no fallback", e.Message);
    }

    [Fact]
    public void ApplyChecksArityAndDevices()
    {
        var e = Assert.Throws<ArgumentException>(() => Tensor.Apply(Op.RmsNorm, new NormAttrs(1e-5), RandomTensor([2, 3], 1)));
        Assert.Contains("takes 2 inputs", e.Message);
    }
}
