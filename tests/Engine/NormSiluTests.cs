using ManagedTensor.Models.Detection.Yolo;
using ManagedTensor.Nn;
using ManagedTensor.Tests.Autograd;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Engine;

/// <summary>
/// BatchNormSilu2d (YOLO's norm + SiLU as one op) and GroupNormSilu (the U-Net's): against a float64 loop, their
/// composites, finite differences, and in the modules.
/// </summary>
public class NormSiluTests
{
    private static double Silu(double y) => y / (1 + Math.Exp(-y));

    /// <summary>silu(batch norm(x)) channel by channel in double.</summary>
    private static double[] Reference(Tensor x, double[]? w, double[]? b, double eps)
    {
        int n = x.Shape[0], c = x.Shape[1], hw = x.Shape[2] * x.Shape[3];
        var v = x.ToDoubleArray();
        var z = new double[v.Length];
        for (int ch = 0; ch < c; ch++)
        {
            var idx = Enumerable.Range(0, n).SelectMany(i => Enumerable.Range((i * c + ch) * hw, hw)).ToArray();
            double mu = idx.Average(i => v[i]), var = idx.Average(i => (v[i] - mu) * (v[i] - mu)), rstd = 1 / Math.Sqrt(var + eps);
            foreach (int i in idx) z[i] = Silu((v[i] - mu) * rstd * (w?[ch] ?? 1) + (b?[ch] ?? 0));
        }
        return z;
    }

    [Theory]
    [InlineData(DType.F32, 2, 3, 5, 7)]    // 35 per plane: SIMD body and tail
    [InlineData(DType.F32, 1, 4, 33, 33)]  // planes longer than the 1024-element blocks of the sums
    [InlineData(DType.F64, 3, 5, 1, 9)]
    public void MatchesALoopAndItsComposite(DType dtype, int n, int c, int h, int w)
    {
        // weights around 1 and biases in [-1, 1], inputs scaled so that z reaches both of SiLU's tails
        var x = RandomTensor([n, c, h, w], seed: 5, dtype).MulScalar(3).AddScalar(1);
        var weight = RandomTensor([c], seed: 6, dtype).MulScalar(2).AddScalar(1);
        var bias = RandomTensor([c], seed: 7, dtype);
        double tol = dtype == DType.F32 ? 2e-5 : 1e-12;
        var expected = Reference(x, weight.ToDoubleArray(), bias.ToDoubleArray(), 1e-3);
        var (z, mean, invstd) = x.BatchNormSilu2d(weight, bias, eps: 1e-3);
        AssertClose(expected, z.ToDoubleArray(), tol, tol);
        var (_, bnMean, bnInvstd) = x.BatchNorm2d(weight, bias, eps: 1e-3);
        AssertClose(bnMean.ToDoubleArray(), mean.ToDoubleArray(), tol, tol);
        AssertClose(bnInvstd.ToDoubleArray(), invstd.ToDoubleArray(), tol, tol);
        var composite = OpRegistry.Get(BatchNormSiluOps.BatchNormSilu2d).Fallback!([x, weight, bias], new NormAttrs(1e-3));
        AssertClose(expected, composite[0].ToDoubleArray(), 10 * tol, 10 * tol);
        AssertClose(Reference(x, null, null, 1e-5), x.BatchNormSilu2d(null, null).Z.ToDoubleArray(), tol, tol);
    }

    [Theory]
    [InlineData(DType.F32, true)]
    [InlineData(DType.F64, true)]
    [InlineData(DType.F64, false)]
    public void BackwardKernelMatchesItsComposite(DType dtype, bool affine)
    {
        // The fused kernel (SiLU's gradient written into dx, then batch norm's two passes) against SiluBackward then BatchNorm2dBackward.
        var x = RandomTensor([3, 5, 2, 7], seed: 41, dtype).MulScalar(2).AddScalar(0.5);
        var dz = RandomTensor([3, 5, 2, 7], seed: 42, dtype);
        var w = affine ? RandomTensor([5], seed: 43, dtype).AddScalar(1) : Tensor.Empty([0], dtype);
        var b = affine ? RandomTensor([5], seed: 44, dtype).MulScalar(2) : Tensor.Empty([0], dtype);
        var (_, mean, invstd) = x.BatchNorm2d(null, null);
        var kernel = Tensor.Apply(BatchNormSiluOps.BatchNormSilu2dBackward, null, dz, x, w, b, mean, invstd);
        var composite = OpRegistry.Get(BatchNormSiluOps.BatchNormSilu2dBackward).Fallback!([dz, x, w, b, mean, invstd], null);
        double tol = dtype == DType.F32 ? 2e-5 : 1e-12;
        for (int k = 0; k < 3; k++) AssertClose(composite[k].ToDoubleArray(), kernel[k].ToDoubleArray(), tol, tol);
        // the bias moves y, so it changes SiLU's gradient: a kernel that ignored it would differ from the bias-free one
        if (affine)
        {
            var noBias = Tensor.Apply(BatchNormSiluOps.BatchNormSilu2dBackward, null, dz, x, w, Tensor.Empty([0], dtype), mean, invstd);
            Assert.True(MaxAbsDiff(noBias[0], kernel[0]) > 1e-3);
        }
    }

    private static double MaxAbsDiff(Tensor a, Tensor b) => a.ToDoubleArray().Zip(b.ToDoubleArray(), (p, q) => Math.Abs(p - q)).Max();

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void GradientMatchesFiniteDifferences(bool affine)
    {
        var x = RandomTensor([2, 3, 2, 3], seed: 21).MulScalar(2);
        if (affine)
            GradCheck.Check(t => t[0].BatchNormSilu2d(t[1], t[2]).Z, [x, RandomTensor([3], seed: 22).AddScalar(1), RandomTensor([3], seed: 23)], rtol: 1e-4, atol: 1e-6);
        else
            GradCheck.Check(t => t[0].BatchNormSilu2d(null, null).Z, [x], rtol: 1e-4, atol: 1e-6);
    }

    [Fact]
    public void NamesTheBadInput()
    {
        var x = Tensor.Zeros([2, 3, 4, 4]);
        Assert.Contains("BatchNormSilu2d: input must be 4-D", Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, 3, 4]).BatchNormSilu2d(null, null)).Message);
        Assert.Contains("weight has shape [4], expected [3]", Assert.Throws<ArgumentException>(() => x.BatchNormSilu2d(Tensor.Ones([4]), null)).Message);
        var (_, mean, invstd) = x.BatchNorm2d(null, null);
        var bad = Assert.Throws<ArgumentException>(() => Tensor.Apply(BatchNormSiluOps.BatchNormSilu2dBackward, null, x, x, x.None(), Tensor.Ones([5]), mean, invstd));
        Assert.Contains("bias", bad.Message);
    }

    [Fact]
    public void TheYoloConvBlockGivesWhatBatchNormThenSiluGivesInTrainingAndEval()
    {
        // Two identical blocks: one runs the fused ForwardSilu, the other its conv, Forward and Silu separately.
        var fused = new ConvBnSilu(3, 4, 3, new Generator(1), Device.Cpu, stride: 2);
        var plain = new ConvBnSilu(3, 4, 3, new Generator(1), Device.Cpu, stride: 2);
        using (GradMode.NoGrad())
            foreach (var block in new[] { fused, plain })
            {
                block.Bn.Weight.CopyFrom_(Tensor.Rand([4], new Generator(2), 0.5, 2));
                block.Bn.Bias.CopyFrom_(Tensor.Rand([4], new Generator(3), -1, 1));
            }
        var x = Tensor.Randn([2, 3, 9, 7], new Generator(4));
        var zf = fused.Forward(x);
        var zp = plain.Bn.Forward(plain.Conv.Forward(x)).Silu();
        AssertClose(zp, zf, 1e-5, 1e-5);
        AssertClose(plain.Bn.RunningMean, fused.Bn.RunningMean, 1e-6, 1e-6);
        AssertClose(plain.Bn.RunningVar, fused.Bn.RunningVar, 1e-6, 1e-6);
        // gradients to the conv weight and the norm's weight and bias through the fused backward
        var dz = Tensor.Randn(zf.Shape, new Generator(5));
        (zf * dz).Sum().Backward();
        (zp * dz).Sum().Backward();
        AssertClose(plain.Conv.Weight.Grad!, fused.Conv.Weight.Grad!, 1e-4, 1e-5);
        AssertClose(plain.Bn.Weight.Grad!, fused.Bn.Weight.Grad!, 1e-4, 1e-5);
        AssertClose(plain.Bn.Bias.Grad!, fused.Bn.Bias.Grad!, 1e-4, 1e-5);

        fused.Eval();
        plain.Eval();
        var e = fused.Forward(x);
        AssertClose(plain.Bn.Forward(plain.Conv.Forward(x)).Silu(), e, 1e-5, 1e-5);
        Assert.True(MaxAbsDiff(e, zf) > 1e-3); // eval uses the running statistics, not the batch's
    }

    /// <summary>silu(group norm(x)) per (sample, group) in double.</summary>
    private static double[] GroupReference(Tensor x, int groups, double[]? w, double[]? b, double eps)
    {
        int n = x.Shape[0], c = x.Shape[1], s = x.Numel / (n * c), m = c / groups * s;
        var v = x.ToDoubleArray();
        var z = new double[v.Length];
        for (int ng = 0; ng < n * groups; ng++)
        {
            var idx = Enumerable.Range(ng * m, m).ToArray();
            double mu = idx.Average(i => v[i]), var = idx.Average(i => (v[i] - mu) * (v[i] - mu)), rstd = 1 / Math.Sqrt(var + eps);
            foreach (int i in idx)
            {
                int ch = i / s % c;
                z[i] = Silu((v[i] - mu) * rstd * (w?[ch] ?? 1) + (b?[ch] ?? 0));
            }
        }
        return z;
    }

    [Theory]
    [InlineData(DType.F32, 2, 6, 3, 5, 7)]   // 35 per channel: SIMD body and tail
    [InlineData(DType.F64, 3, 4, 2, 3, 1)]
    public void GroupNormSiluMatchesALoopAndItsComposite(DType dtype, int n, int c, int groups, int h, int w)
    {
        var x = RandomTensor([n, c, h, w], seed: 61, dtype).MulScalar(3).AddScalar(1);
        var weight = RandomTensor([c], seed: 62, dtype).MulScalar(2).AddScalar(1);
        var bias = RandomTensor([c], seed: 63, dtype);
        double tol = dtype == DType.F32 ? 2e-5 : 1e-12;
        var expected = GroupReference(x, groups, weight.ToDoubleArray(), bias.ToDoubleArray(), 1e-5);
        AssertClose(expected, x.GroupNormSilu(groups, weight, bias).ToDoubleArray(), tol, tol);
        var composite = OpRegistry.Get(GroupNormSiluOps.GroupNormSilu).Fallback!([x, weight, bias], new GroupNormAttrs(groups));
        AssertClose(expected, composite[0].ToDoubleArray(), 10 * tol, 10 * tol);
        AssertClose(GroupReference(x, groups, null, null, 1e-5), x.GroupNormSilu(groups, null, null).ToDoubleArray(), tol, tol);
    }

    [Theory]
    [InlineData(DType.F32, true)]
    [InlineData(DType.F64, false)]
    public void GroupNormSiluBackwardKernelMatchesItsComposite(DType dtype, bool affine)
    {
        var x = RandomTensor([2, 6, 3, 5], seed: 71, dtype).MulScalar(2).AddScalar(0.5);
        var dz = RandomTensor([2, 6, 3, 5], seed: 72, dtype);
        var w = affine ? RandomTensor([6], seed: 73, dtype).AddScalar(1) : Tensor.Empty([0], dtype);
        var b = affine ? RandomTensor([6], seed: 74, dtype).MulScalar(2) : Tensor.Empty([0], dtype);
        var stats = Tensor.Apply(GroupNormOps.GroupNorm, new GroupNormAttrs(3), x, x.None(), x.None());
        var kernel = Tensor.Apply(GroupNormSiluOps.GroupNormSiluBackward, null, dz, x, w, b, stats[1], stats[2]);
        var composite = OpRegistry.Get(GroupNormSiluOps.GroupNormSiluBackward).Fallback!([dz, x, w, b, stats[1], stats[2]], null);
        double tol = dtype == DType.F32 ? 2e-5 : 1e-12;
        for (int k = 0; k < 3; k++) AssertClose(composite[k].ToDoubleArray(), kernel[k].ToDoubleArray(), tol, tol);
        var bad = Assert.Throws<ArgumentException>(() => Tensor.Apply(GroupNormSiluOps.GroupNormSiluBackward, null, dz, x, w, Tensor.Ones([5], dtype), stats[1], stats[2]));
        Assert.Contains("GroupNormSiluBackward: bias", bad.Message);
    }

    [Fact]
    public void GroupNormSiluGradientMatchesFiniteDifferences()
        => GradCheck.Check(t => t[0].GroupNormSilu(2, t[1], t[2]), [RandomTensor([2, 4, 2, 3], seed: 81).MulScalar(2), RandomTensor([4], seed: 82).AddScalar(1), RandomTensor([4], seed: 83)],
            rtol: 1e-4, atol: 1e-6);

    [Fact]
    public void GroupNormModuleForwardSiluIsForwardThenSilu()
    {
        var norm = new GroupNorm(2, 4, Device.Cpu);
        using (GradMode.NoGrad()) norm.Bias.CopyFrom_(Tensor.Rand([4], new Generator(1), -1, 1));
        var x = Tensor.Randn([3, 4, 5, 5], new Generator(2));
        AssertClose(norm.Forward(x).Silu(), norm.ForwardSilu(x), 1e-5, 1e-5);
        Assert.Contains("GroupNormSilu: 3 groups must divide", Assert.Throws<ArgumentException>(() => x.GroupNormSilu(3, null, null)).Message);
    }
}
