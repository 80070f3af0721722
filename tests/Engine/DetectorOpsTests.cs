using ManagedTensor.Tests.Autograd;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Engine;

/// <summary>LeakyRelu, BatchNorm2d, SiLU's backward and BCE on logits (the detector's ops) against float64 loops, their composites, and finite differences.</summary>
public class DetectorOpsTests
{
    [Theory]
    [InlineData(DType.F32, 0.1)]
    [InlineData(DType.F64, 0.01)]
    public void LeakyReluMatchesALoopAndItsComposite(DType dtype, double slope)
    {
        var x = RandomTensor([2, 3, 5, 7], seed: 3, dtype);
        var expected = x.ToDoubleArray().Select(v => v > 0 ? v : slope * v).ToArray();
        AssertClose(expected, x.LeakyRelu(slope).ToDoubleArray(), 1e-6, 1e-7);
        var composite = OpRegistry.Get(LeakyReluOps.LeakyRelu).Fallback!([x], new ScalarAttrs(slope))[0];
        AssertClose(expected, composite.ToDoubleArray(), 1e-6, 1e-7);
    }

    [Fact]
    public void LeakyReluGradientMatchesFiniteDifferences()
        => GradCheck.Check(t => t[0].LeakyRelu(0.1), [RandomTensor([3, 4, 5], seed: 11)]);

    /// <summary>y, mean and invstd of batch norm with batch statistics, computed channel by channel in double.</summary>
    private static (double[] Y, double[] Mean, double[] InvStd) Reference(Tensor x, double[]? w, double[]? b, double eps)
    {
        int n = x.Shape[0], c = x.Shape[1], hw = x.Shape[2] * x.Shape[3];
        var v = x.ToDoubleArray();
        var (y, mean, invstd) = (new double[v.Length], new double[c], new double[c]);
        for (int ch = 0; ch < c; ch++)
        {
            var idx = Enumerable.Range(0, n).SelectMany(i => Enumerable.Range((i * c + ch) * hw, hw)).ToArray();
            double mu = idx.Average(i => v[i]), var = idx.Average(i => (v[i] - mu) * (v[i] - mu));
            (mean[ch], invstd[ch]) = (mu, 1 / Math.Sqrt(var + eps));
            foreach (int i in idx) y[i] = (v[i] - mu) * invstd[ch] * (w?[ch] ?? 1) + (b?[ch] ?? 0);
        }
        return (y, mean, invstd);
    }

    [Theory]
    [InlineData(DType.F32, 2, 3, 5, 7)]
    [InlineData(DType.F64, 3, 5, 1, 9)]
    [InlineData(DType.F64, 1, 2, 3, 1)]
    public void BatchNorm2dMatchesALoopAndItsComposite(DType dtype, int n, int c, int h, int w)
    {
        var x = RandomTensor([n, c, h, w], seed: 5, dtype).MulScalar(3).AddScalar(1);
        var weight = RandomTensor([c], seed: 6, dtype).AddScalar(1);
        var bias = RandomTensor([c], seed: 7, dtype);
        double tol = dtype == DType.F32 ? 1e-5 : 1e-12;
        var (ey, em, es) = Reference(x, weight.ToDoubleArray(), bias.ToDoubleArray(), 1e-5);
        var (y, mean, invstd) = x.BatchNorm2d(weight, bias);
        AssertClose(ey, y.ToDoubleArray(), tol, tol);
        AssertClose(em, mean.ToDoubleArray(), tol, tol);
        AssertClose(es, invstd.ToDoubleArray(), tol, tol);
        var composite = OpRegistry.Get(BatchNormOps.BatchNorm2d).Fallback!([x, weight, bias], new NormAttrs(1e-5));
        AssertClose(ey, composite[0].ToDoubleArray(), 10 * tol, 10 * tol);
        AssertClose(es, composite[2].ToDoubleArray(), 10 * tol, 10 * tol);
        var (plain, _, _) = x.BatchNorm2d(null, null, eps: 1e-3);
        AssertClose(Reference(x, null, null, 1e-3).Y, plain.ToDoubleArray(), tol, tol);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BatchNorm2dGradientMatchesFiniteDifferences(bool affine)
    {
        var x = RandomTensor([2, 3, 2, 3], seed: 21);
        if (affine)
            GradCheck.Check(t => t[0].BatchNorm2d(t[1], t[2]).Y, [x, RandomTensor([3], seed: 22).AddScalar(1), RandomTensor([3], seed: 23)], rtol: 1e-4, atol: 1e-6);
        else
            GradCheck.Check(t => t[0].BatchNorm2d(null, null).Y, [x], rtol: 1e-4, atol: 1e-6);
    }

    [Fact]
    public void BatchNorm2dNamesTheBadInput()
    {
        var x = Tensor.Zeros([2, 3, 4, 4]);
        Assert.Contains("4-D", Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, 3, 4]).BatchNorm2d(null, null)).Message);
        Assert.Contains("weight has shape [4], expected [3]", Assert.Throws<ArgumentException>(() => x.BatchNorm2d(Tensor.Ones([4]), null)).Message);
        Assert.Contains("bias", Assert.Throws<ArgumentException>(() => x.BatchNorm2d(null, Tensor.Ones([3], DType.F64))).Message);
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void LeakyReluBackwardKernelMatchesALoopAndItsComposite(DType dtype)
    {
        var dy = RandomTensor([2, 3, 5, 7], seed: 31, dtype);
        var x = RandomTensor([2, 3, 5, 7], seed: 32, dtype);
        var (g, xs) = (dy.ToDoubleArray(), x.ToDoubleArray());
        var expected = g.Select((v, i) => xs[i] > 0 ? v : 0.1 * v).ToArray();
        AssertClose(expected, Tensor.Apply(LeakyReluOps.LeakyReluBackward, new ScalarAttrs(0.1), dy, x)[0].ToDoubleArray(), 1e-6, 1e-7);
        var composite = OpRegistry.Get(LeakyReluOps.LeakyReluBackward).Fallback!([dy, x], new ScalarAttrs(0.1))[0];
        AssertClose(expected, composite.ToDoubleArray(), 1e-6, 1e-7);
    }

    [Theory]
    [InlineData(DType.F32, true)]
    [InlineData(DType.F64, true)]
    [InlineData(DType.F64, false)]
    public void BatchNorm2dBackwardKernelMatchesItsComposite(DType dtype, bool affine)
    {
        // The CPU kernel (one pass of sums, one of dx, in double) against the composite of tensor ops it replaced.
        var x = RandomTensor([3, 5, 2, 7], seed: 41, dtype).MulScalar(2).AddScalar(0.5);
        var dy = RandomTensor([3, 5, 2, 7], seed: 42, dtype);
        var w = affine ? RandomTensor([5], seed: 43, dtype).AddScalar(1) : Tensor.Empty([0], dtype);
        var (_, mean, invstd) = x.BatchNorm2d(null, null);
        var kernel = Tensor.Apply(BatchNormOps.BatchNorm2dBackward, null, dy, x, w, mean, invstd);
        var composite = OpRegistry.Get(BatchNormOps.BatchNorm2dBackward).Fallback!([dy, x, w, mean, invstd], null);
        double tol = dtype == DType.F32 ? 2e-5 : 1e-12;
        for (int k = 0; k < 3; k++) AssertClose(composite[k].ToDoubleArray(), kernel[k].ToDoubleArray(), tol, tol);
        // dx sums to 0 over each channel (the mean is subtracted); a wrong dbias term would break it
        var dx = kernel[0].ToDoubleArray();
        for (int ch = 0; ch < 5; ch++)
            Assert.Equal(0, Enumerable.Range(0, 3).SelectMany(i => Enumerable.Range((i * 5 + ch) * 14, 14)).Sum(i => dx[i]), dtype == DType.F32 ? 1e-4 : 1e-10);
        var bad = Assert.Throws<ArgumentException>(() => Tensor.Apply(BatchNormOps.BatchNorm2dBackward, null, dy, x, Tensor.Ones([4], dtype), mean, invstd));
        Assert.Contains("weight", bad.Message);
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void SiluBackwardKernelMatchesALoopAndItsComposite(DType dtype)
    {
        // 2 x 3 x 5 x 7 = 210 elements: a partial SIMD tail; values out to +-8 where s saturates
        var dy = RandomTensor([2, 3, 5, 7], seed: 51, dtype);
        var x = RandomTensor([2, 3, 5, 7], seed: 52, dtype).MulScalar(4);
        var (g, xs) = (dy.ToDoubleArray(), x.ToDoubleArray());
        var expected = g.Select((v, i) => { double s = 1 / (1 + Math.Exp(-xs[i])); return v * s * (1 + xs[i] * (1 - s)); }).ToArray();
        double tol = dtype == DType.F32 ? 1e-5 : 1e-12;
        AssertClose(expected, Tensor.Apply(SiluBackwardOps.SiluBackward, null, dy, x)[0].ToDoubleArray(), tol, tol);
        AssertClose(expected, OpRegistry.Get(SiluBackwardOps.SiluBackward).Fallback!([dy, x], null)[0].ToDoubleArray(), tol, tol);
    }

    [Fact]
    public void SiluGradientThroughTheFusedBackwardMatchesFiniteDifferences()
        => GradCheck.Check(t => t[0].Silu(), [RandomTensor([3, 4, 5], seed: 53).MulScalar(3)]);
    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void BceWithLogitsKernelsMatchALoopAndTheirComposites(DType dtype)
    {
        // 2 x 3 x 5 x 7 = 210 elements: a partial SIMD tail; logits out to +-30, where log(1 + e^-|x|) underflows
        // and a naive -t log s - (1 - t) log(1 - s) would give infinities. The logits are a transposed view (as the
        // YOLO loss passes them), which the front end makes contiguous.
        var x = RandomTensor([2, 5, 3, 7], seed: 54, dtype).MulScalar(30).Permute(0, 2, 1, 3);
        var t = RandomTensor([2, 3, 5, 7], seed: 55, dtype).Abs().Minimum(Tensor.Ones([1], dtype));
        var g = RandomTensor([2, 3, 5, 7], seed: 56, dtype);
        var (xs, ts, gs) = (x.ToDoubleArray(), t.ToDoubleArray(), g.ToDoubleArray());
        var loss = xs.Select((v, i) => Math.Max(v, 0) - v * ts[i] + Math.Log(1 + Math.Exp(-Math.Abs(v)))).ToArray();
        var dx = xs.Select((v, i) => gs[i] * (1 / (1 + Math.Exp(-v)) - ts[i])).ToArray();
        Assert.True(loss.Max() > 20 && loss.Min() >= 0, "the case reaches large logits");
        double tol = dtype == DType.F32 ? 1e-5 : 1e-12;
        AssertClose(loss, x.BceWithLogits(t).ToDoubleArray(), tol, tol);
        AssertClose(loss, OpRegistry.Get(BceWithLogitsOps.BceWithLogits).Fallback!([x, t], null)[0].ToDoubleArray(), tol, tol);
        AssertClose(dx, Tensor.Apply(BceWithLogitsOps.BceWithLogitsBackward, null, x, t, g)[0].ToDoubleArray(), tol, tol);
        AssertClose(dx, OpRegistry.Get(BceWithLogitsOps.BceWithLogitsBackward).Fallback!([x, t, g], null)[0].ToDoubleArray(), tol, tol);
        var bad = Assert.Throws<ArgumentException>(() => x.BceWithLogits(Tensor.Ones([2, 3, 5], dtype)));
        Assert.Contains("target", bad.Message);
    }

    [Fact]
    public void BceWithLogitsGradientsMatchFiniteDifferences()
        => GradCheck.Check(t => t[0].BceWithLogits(t[1]), [RandomTensor([3, 4, 5], seed: 57).MulScalar(3), RandomTensor([3, 4, 5], seed: 58).Abs()]);
}
