using Xunit;
using static ManagedTensor.Tests.Engine.EngineRef;

namespace ManagedTensor.Tests.Engine;

/// <summary>Counter-based random tensors: determinism, counters, and the moments of the distributions.</summary>
public class RandomTests
{
    [Fact]
    public void SameSeedSameNumbers()
    {
        var a = Tensor.Randn([100, 7], new Generator(42));
        var b = Tensor.Randn([100, 7], new Generator(42));
        var c = Tensor.Randn([100, 7], new Generator(43));
        Assert.Equal(a.ToArray<float>(), b.ToArray<float>());
        Assert.NotEqual(a.ToArray<float>(), c.ToArray<float>());
    }

    [Fact]
    public void ElementIUsesCounterOffsetPlusI()
    {
        var gen = new Generator(7, offset: 1000);
        var u = Tensor.Rand([50], gen, -2, 3).ToArray<float>();
        Assert.Equal(1050UL, gen.Offset);
        for (int i = 0; i < 50; i++) Assert.Equal(-2 + 5 * (double)Philox.Uniform(7, 1000 + (ulong)i), u[i], 1e-6);
        // Two draws in a row equal one draw of the concatenated size.
        var g1 = new Generator(9);
        var first = Tensor.Rand([30], g1).ToArray<float>().Concat(Tensor.Rand([20], g1).ToArray<float>());
        Assert.Equal(Tensor.Rand([50], new Generator(9)).ToArray<float>(), first);
        var n = Tensor.Randn([10], new Generator(5, 64)).ToArray<float>();
        for (int i = 0; i < 10; i++) Assert.Equal(Philox.Normal(5, 32 + (ulong)i), n[i]);
    }

    [Fact]
    public void NormalsAfterAnOddDrawDoNotReuseWords()
    {
        // Rand([3]) uses words 0..2; the next normals must start at word 4 (normal index 2), not reuse word 2.
        var gen = new Generator(11);
        Tensor.Rand([3], gen);
        var n = Tensor.Randn([4], gen).ToArray<float>();
        for (int i = 0; i < 4; i++) Assert.Equal(Philox.Normal(11, 2 + (ulong)i), n[i]);
        Assert.Equal(12UL, gen.Offset);
    }

    [Fact]
    public void NormalMoments()
    {
        var x = Values(Tensor.Randn([100_000], new Generator(1), mean: 2, std: 3));
        double mean = x.Average();
        double std = Math.Sqrt(x.Sum(v => (v - mean) * (v - mean)) / (x.Length - 1));
        Assert.InRange(mean, 2 - 0.05, 2 + 0.05);      // standard error 3 / sqrt(1e5) ~ 0.0095
        Assert.InRange(std, 3 * 0.99, 3 * 1.01);
    }

    [Fact]
    public void UniformRangeAndMoments()
    {
        var x = Values(Tensor.Rand([100_000], new Generator(2), low: -1, high: 3));
        Assert.All(x, v => Assert.InRange(v, -1, 3 - 1e-9));
        Assert.InRange(x.Average(), 1 - 0.02, 1 + 0.02);   // std of the mean 4 / sqrt(12e5) ~ 0.0037
        double var = x.Sum(v => (v - 1) * (v - 1)) / x.Length;
        Assert.InRange(var, 16.0 / 12 * 0.98, 16.0 / 12 * 1.02);
    }

    [Theory]
    [InlineData(DType.F64)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void OtherFloatDtypesHoldTheFloat32Samples(DType dtype)
    {
        var f32 = Values(Tensor.Randn([1000], new Generator(3)));
        var other = Values(Tensor.Randn([1000], new Generator(3), dtype: dtype));
        double tol = dtype == DType.F64 ? 1e-7 : dtype == DType.F16 ? 2e-3 : 1e-2;
        TestUtil.AssertClose(f32, other, tol, 1e-6, dtype.ToString());
    }

    [Fact]
    public void IntegerRandomIsAnError()
    {
        Assert.Throws<NotSupportedException>(() => Tensor.Rand([3], new Generator(1), dtype: DType.I32));
    }
}
