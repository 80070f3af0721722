using ManagedTensor.Models.IO;
using ManagedTensor.Tests.Autograd;
using ManagedTensor.Tests.IO;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Engine;

/// <summary>
/// GroupNorm against a float64 loop, its composite fallback, torch.nn.functional.group_norm (tests/fixtures/diffusion,
/// values and gradients), finite differences through the fused backward, and its errors.
/// </summary>
public sealed class GroupNormTests
{
    private static readonly Dictionary<string, Tensor> Fixture = SafeTensors.Load(Fixtures.Path("diffusion/diffusion.safetensors"));

    /// <summary>The definition as a loop: per (sample, group) the mean and biased variance of its C/G * S values.</summary>
    private static double[] Reference(double[] x, int n, int c, int s, int groups, double[]? w, double[]? b, double eps)
    {
        var y = new double[x.Length];
        int cg = c / groups, m = cg * s;
        for (int i = 0; i < n; i++)
            for (int g = 0; g < groups; g++)
            {
                int start = (i * c + g * cg) * s;
                double mean = 0, v = 0;
                for (int k = 0; k < m; k++) mean += x[start + k];
                mean /= m;
                for (int k = 0; k < m; k++) v += (x[start + k] - mean) * (x[start + k] - mean);
                double rstd = 1 / Math.Sqrt(v / m + eps);
                for (int k = 0; k < m; k++)
                {
                    int ch = g * cg + k / s;
                    y[start + k] = (x[start + k] - mean) * rstd * (w?[ch] ?? 1) + (b?[ch] ?? 0);
                }
            }
        return y;
    }

    [Theory]
    [InlineData(DType.F64, 2, 6, 3, 5, 3)]
    [InlineData(DType.F32, 3, 5, 7, 1, 5)]
    [InlineData(DType.F32, 1, 8, 4, 4, 1)]
    public void MatchesALoopAndItsComposite(DType dtype, int n, int c, int h, int w, int groups)
    {
        var x = RandomTensor([n, c, h, w], seed: 3).MulScalar(2).AddScalar(0.5).To(dtype);
        var weight = RandomTensor([c], seed: 4).AddScalar(1.5).To(dtype);
        var bias = RandomTensor([c], seed: 5).To(dtype);
        double tol = dtype == DType.F64 ? 1e-12 : 2e-5;
        var expected = Reference(x.ToDoubleArray(), n, c, h * w, groups, weight.ToDoubleArray(), bias.ToDoubleArray(), 1e-5);
        AssertClose(expected, x.GroupNorm(groups, weight, bias).ToDoubleArray(), tol, tol, "kernel");
        var composite = OpRegistry.Get(GroupNormOps.GroupNorm).Fallback!([x, weight, bias], new GroupNormAttrs(groups));
        AssertClose(expected, composite[0].ToDoubleArray(), tol, tol, "composite");
        AssertClose(Reference(x.ToDoubleArray(), n, c, h * w, groups, null, null, 1e-5), x.GroupNorm(groups, null, null).ToDoubleArray(), tol, tol, "no affine");
    }

    [Fact]
    public void MatchesTorchInValuesAndGradients()
    {
        var x = Fixture["gn.x"].Clone().Detach();
        var w = Fixture["gn.weight"].Clone().Detach();
        var b = Fixture["gn.bias"].Clone().Detach();
        foreach (var t in new[] { x, w, b }) t.RequiresGrad = true;
        var y = x.GroupNorm(3, w, b);
        AssertClose(Fixture["gn.y"], y, 1e-12, 1e-12, "y");
        (y * Fixture["gn.dy"]).Sum().Backward();
        AssertClose(Fixture["gn.grad_x"], x.Grad!, 1e-10, 1e-12, "dx");
        AssertClose(Fixture["gn.grad_weight"], w.Grad!, 1e-10, 1e-12, "dweight");
        AssertClose(Fixture["gn.grad_bias"], b.Grad!, 1e-10, 1e-12, "dbias");
    }

    [Fact]
    public void FusedBackwardMatchesFiniteDifferences() =>
        GradCheck.Check(t => t[0].GroupNorm(2, t[1], t[2]).Square(),
            [RandomTensor([2, 4, 3, 1], seed: 7), RandomTensor([4], seed: 8).AddScalar(1), RandomTensor([4], seed: 9)]);

    [Fact]
    public void ThreeDimensionalInputsAndNoAffineDifferentiate() =>
        GradCheck.Check(t => t[0].GroupNorm(3, null, null).Exp(), [RandomTensor([2, 3, 5], seed: 10)]);

    [Fact]
    public void BadShapesAreNamed()
    {
        var x = Tensor.Zeros([2, 6, 3, 3]);
        Assert.Contains("4 groups must divide the 6 channels", Assert.Throws<ArgumentException>(() => x.GroupNorm(4, null, null)).Message);
        Assert.Contains("weight has shape [5]", Assert.Throws<ArgumentException>(() => x.GroupNorm(3, Tensor.Ones([5]), null)).Message);
        Assert.Contains("(N, C, ...)", Assert.Throws<ArgumentException>(() => Tensor.Zeros([6]).GroupNorm(3, null, null)).Message);
    }
}
