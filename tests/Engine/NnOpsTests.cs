using ManagedTensor.Cpu;
using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>
/// Helpers shared by the neural-network op tests (NormTests, IndexTests, LossTests, ConvTests, PoolTests):
/// tensors built straight from host arrays in F32 or F64, values read back as double, tolerance presets
/// per dtype and a central-difference gradient in float64.
/// </summary>
internal static class Nn
{
    public static readonly DType[] FloatTypes = [DType.F32, DType.F64];

    /// <summary>Relative tolerance against a float64 reference: F32 keeps ~7 digits, F64 ~16.</summary>
    public static double Rtol(DType t) => t == DType.F32 ? 1e-4 : 1e-10;
    public static double Atol(DType t) => t == DType.F32 ? 1e-5 : 1e-12;

    public static Tensor Make(double[] values, int[] shape, DType dtype) => dtype switch
    {
        DType.F32 => Tensor.FromArray(values.Select(v => (float)v).ToArray(), shape),
        DType.F64 => Tensor.FromArray((double[])values.Clone(), shape),
        _ => throw new ArgumentException($"no test tensors of {dtype}"),
    };

    public static Tensor Random(int[] shape, int seed, DType dtype, double scale = 1)
        => Make(TestUtil.RandomValues(Numel(shape), seed).Select(v => v * scale).ToArray(), shape, dtype);

    public static Tensor Index(long[] values, DType dtype, int[]? shape = null) => dtype switch
    {
        DType.I32 => Tensor.FromArray(values.Select(v => (int)v).ToArray(), shape ?? [values.Length]),
        DType.I64 => Tensor.FromArray((long[])values.Clone(), shape ?? [values.Length]),
        _ => throw new ArgumentException($"indices are I32 or I64, not {dtype}"),
    };

    public static double[] Values(Tensor t) => t.DType switch
    {
        DType.F32 => t.ToArray<float>().Select(v => (double)v).ToArray(),
        DType.F64 => t.ToArray<double>(),
        DType.I32 => t.ToArray<int>().Select(v => (double)v).ToArray(),
        DType.I64 => t.ToArray<long>().Select(v => (double)v).ToArray(),
        _ => throw new ArgumentException($"cannot read {t.Describe()}"),
    };

    public static int Numel(int[] shape) => shape.Aggregate(1, (a, b) => a * b);

    /// <summary>Asserts <paramref name="actual"/> matches the float64 reference within the dtype's preset.</summary>
    public static void Close(double[] expected, Tensor actual, string what, double scale = 1)
        => TestUtil.AssertClose(expected, Values(actual), Rtol(actual.DType) * scale, Atol(actual.DType) * scale, $"{what} {actual.DType}");

    /// <summary>d loss / d x by central differences, eps 1e-6, one element at a time (small shapes only).</summary>
    public static double[] NumericGrad(double[] x, Func<double[], double> loss, double eps = 1e-6)
    {
        var grad = new double[x.Length];
        var xp = (double[])x.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            xp[i] = x[i] + eps;
            double up = loss(xp);
            xp[i] = x[i] - eps;
            double down = loss(xp);
            xp[i] = x[i];
            grad[i] = (up - down) / (2 * eps);
        }
        return grad;
    }

    /// <summary>sum_i y_i * g_i: a scalar whose gradient with respect to y is g, the dy handed to backward ops.</summary>
    public static double Project(Tensor y, double[] g)
    {
        var v = Values(y);
        double s = 0;
        for (int i = 0; i < v.Length; i++) s += v[i] * g[i];
        return s;
    }

    /// <summary>Finite-difference gradients agree with analytic float64 ones to about 1e-7 relative.</summary>
    public static void GradClose(double[] numeric, Tensor analytic, string what)
        => TestUtil.AssertClose(numeric, Values(analytic), 1e-6, 1e-7, $"{what} vs finite differences");
}

/// <summary>Behaviour common to all the neural-network ops on the CPU backend.</summary>
public class NnOpsTests
{
    [Fact]
    public void HalfPrecisionComputeOpsSayWhichDtypesTheyTake()
    {
        var x = Tensor.FromArray(new Half[] { (Half)1, (Half)2, (Half)3 }, [1, 3]);
        var y = Tensor.Empty([1, 3], DType.F16);
        var e = Assert.Throws<NotSupportedException>(() => CpuBackend.Instance.Execute(Op.Softmax, [x], [y], null));
        Assert.Contains("Softmax", e.Message);
        Assert.Contains("F16", e.Message);
    }

    [Fact]
    public void IndexSelectCopiesAnyDtype()
    {
        var x = Tensor.FromArray(new Half[] { (Half)1, (Half)2, (Half)3, (Half)4 }, [2, 2]);
        var y = x.IndexSelect(0, Nn.Index([1, 1, 0], DType.I64));
        Assert.Equal([3.0, 4, 3, 4, 1, 2], y.ToArray<Half>().Select(v => (double)v));
    }

    [Fact]
    public void ChunkingDependsOnlyOnTheProblemSize()
    {
        // Deterministic reductions rely on it: the same shape gives the same partition on any machine.
        Assert.Equal(1, NnKernels.ChunkCount(1, 1_000_000));
        Assert.Equal(1, NnKernels.ChunkCount(100, 10));
        Assert.Equal(64, NnKernels.ChunkCount(10_000, 10_000));
        int chunks = NnKernels.ChunkCount(1000, 1000), covered = 0;
        for (int c = 0; c < chunks; c++)
        {
            var (s, e) = NnKernels.ChunkRange(c, chunks, 1000);
            Assert.Equal(covered, s);
            covered = e;
        }
        Assert.Equal(1000, covered);
    }
}
