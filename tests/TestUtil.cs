using Xunit;

namespace ManagedTensor.Tests;

/// <summary>Shared assertions: compare tensors with relative and absolute tolerances.</summary>
public static class TestUtil
{
    /// <summary>Asserts |actual - expected| &lt;= atol + rtol * |expected| element by element, naming the first bad index.</summary>
    public static void AssertClose(double[] expected, double[] actual, double rtol = 1e-5, double atol = 1e-6, string what = "")
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (double.IsNaN(e) && double.IsNaN(a)) continue;
            if (double.IsInfinity(e) && e == a) continue;
            Assert.True(Math.Abs(a - e) <= atol + rtol * Math.Abs(e), $"{what}: element {i}: got {a}, expected {e} (rtol {rtol}, atol {atol})");
        }
    }

    public static void AssertClose(Tensor expected, Tensor actual, double rtol = 1e-5, double atol = 1e-6, string what = "")
    {
        Assert.Equal(expected.Shape, actual.Shape);
        AssertClose(expected.ToDoubleArray(), actual.ToDoubleArray(), rtol, atol, what);
    }

    /// <summary>Deterministic pseudo-random doubles in [-1, 1) for test inputs.</summary>
    public static double[] RandomValues(int n, int seed)
    {
        var rng = new Random(seed);
        var v = new double[n];
        for (int i = 0; i < n; i++) v[i] = rng.NextDouble() * 2 - 1;
        return v;
    }

    /// <summary>A random F64 or F32 tensor of the given shape.</summary>
    public static Tensor RandomTensor(int[] shape, int seed, DType dtype = DType.F64)
    {
        int n = shape.Aggregate(1, (a, b) => a * b);
        return Tensor.FromArray(RandomValues(n, seed), shape).To(dtype);
    }
}
