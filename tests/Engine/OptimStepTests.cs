using Xunit;
using static ManagedTensor.Tests.Engine.EngineRef;

namespace ManagedTensor.Tests.Engine;

/// <summary>The fused AdamW kernel against a scalar float64 transcription of torch.optim.AdamW.</summary>
public class OptimStepTests
{
    private static void Reference(double[] p, double[] g, double[] m, double[] v, AdamWAttrs a)
    {
        double bc1 = 1 - Math.Pow(a.Beta1, a.Step), bc2 = 1 - Math.Pow(a.Beta2, a.Step);
        for (int i = 0; i < p.Length; i++)
        {
            p[i] *= 1 - a.Lr * a.WeightDecay;
            m[i] = a.Beta1 * m[i] + (1 - a.Beta1) * g[i];
            v[i] = a.Beta2 * v[i] + (1 - a.Beta2) * g[i] * g[i];
            double mhat = m[i] / bc1, vhat = v[i] / bc2;
            p[i] -= a.Lr * mhat / (Math.Sqrt(vhat) + a.Eps);
        }
    }

    [Theory]
    [InlineData(DType.F32, 1007)]
    [InlineData(DType.F64, 1007)]
    [InlineData(DType.F32, 50_003)]
    [InlineData(DType.F64, 3)]
    public void MatchesScalarReferenceOverSteps(DType dtype, int n)
    {
        var param = Random([n], 1, dtype);
        var m = Tensor.Zeros([n], dtype);
        var v = Tensor.Zeros([n], dtype);
        double[] rp = Values(param), rm = new double[n], rv = new double[n];
        for (int step = 1; step <= 5; step++)
        {
            var grad = Random([n], 10 + step, dtype);
            var attrs = new AdamWAttrs(Lr: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: step);
            param.Backend.Execute(Op.AdamWStep, [grad], [param, m, v], attrs);
            Reference(rp, Values(grad), rm, rv, attrs);
        }
        double rtol = dtype == DType.F64 ? 1e-12 : 2e-5;
        TestUtil.AssertClose(rp, Values(param), rtol, rtol, "param");
        TestUtil.AssertClose(rm, Values(m), rtol, 1e-7, "m");
        TestUtil.AssertClose(rv, Values(v), rtol, 1e-9, "v");
    }

    [Fact]
    public void NonContiguousGradient()
    {
        var param = Random([6, 5], 1, DType.F64);
        var grad = Random([5, 6], 2, DType.F64).MT;
        var m = Tensor.Zeros([6, 5], DType.F64);
        var v = Tensor.Zeros([6, 5], DType.F64);
        double[] rp = Values(param), rm = new double[30], rv = new double[30];
        var attrs = new AdamWAttrs(1e-3, 0.9, 0.999, 1e-8, 0.01, 1);
        param.Backend.Execute(Op.AdamWStep, [grad], [param, m, v], attrs);
        Reference(rp, Values(grad), rm, rv, attrs);
        TestUtil.AssertClose(rp, Values(param), 1e-12, 1e-14, "param");
    }

    [Fact]
    public void ShapeMismatchNamesBothTensors()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            Tensor.Zeros([4]).Backend.Execute(Op.AdamWStep, [Tensor.Zeros([5])], [Tensor.Zeros([4]), Tensor.Zeros([4]), Tensor.Zeros([4])],
                new AdamWAttrs(1e-3, 0.9, 0.999, 1e-8, 0, 1)));
        Assert.Contains("[5]", e.Message);
        Assert.Contains("[4]", e.Message);
    }
}
