using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>
/// Backend-independent readers for engine tests: values are read straight from the storage with
/// Offset + sum(index * stride), so a test does not trust the Copy kernel it may be testing.
/// </summary>
public static class EngineRef
{
    /// <summary>The elements of any view, row-major, as doubles.</summary>
    public static double[] Values(Tensor t)
    {
        var raw = ToDoubles(t.Storage.ToHostArray(0, t.Storage.Length));
        var result = new double[t.Numel];
        var index = new int[t.Rank];
        int off = t.Offset;
        for (int i = 0; i < t.Numel; i++)
        {
            result[i] = raw[off];
            for (int d = t.Rank - 1; d >= 0; d--)
            {
                off += t.Strides[d];
                if (++index[d] < t.Shape[d]) break;
                off -= t.Strides[d] * t.Shape[d];
                index[d] = 0;
            }
        }
        return result;
    }

    private static double[] ToDoubles(Array a) => a switch
    {
        float[] f => f.Select(v => (double)v).ToArray(),
        double[] d => d,
        Half[] h => h.Select(v => (double)v).ToArray(),
        BFloat16[] b => b.Select(v => (double)v.ToFloat()).ToArray(),
        int[] i => i.Select(v => (double)v).ToArray(),
        long[] l => l.Select(v => (double)v).ToArray(),
        sbyte[] s => s.Select(v => (double)v).ToArray(),
        byte[] u => u.Select(v => (double)v).ToArray(),
        _ => throw new ArgumentException($"unknown array type {a.GetType()}"),
    };

    /// <summary>A tensor of the given dtype holding <paramref name="values"/> converted by plain casts (no backend copy).</summary>
    public static Tensor Make(double[] values, int[] shape, DType dtype) => dtype switch
    {
        DType.F32 => Tensor.FromArray(values.Select(v => (float)v).ToArray(), shape),
        DType.F64 => Tensor.FromArray(values.ToArray(), shape),
        DType.F16 => Tensor.FromArray(values.Select(v => (Half)v).ToArray(), shape),
        DType.BF16 => Tensor.FromArray(values.Select(v => BFloat16.FromFloat((float)v)).ToArray(), shape),
        DType.I32 => Tensor.FromArray(values.Select(v => (int)v).ToArray(), shape),
        DType.I64 => Tensor.FromArray(values.Select(v => (long)v).ToArray(), shape),
        DType.I8 => Tensor.FromArray(values.Select(v => (sbyte)v).ToArray(), shape),
        DType.U8 => Tensor.FromArray(values.Select(v => (byte)v).ToArray(), shape),
        _ => throw new ArgumentException($"dtype {dtype}"),
    };

    /// <summary>Random values in [lo, hi), rounded to the dtype so the reference sees exactly what the tensor holds.</summary>
    public static Tensor Random(int[] shape, int seed, DType dtype, double lo = -1, double hi = 1)
    {
        int n = shape.Aggregate(1, (a, b) => a * b);
        var rng = new Random(seed);
        var v = new double[n];
        for (int i = 0; i < n; i++) v[i] = lo + (hi - lo) * rng.NextDouble();
        if (!dtype.IsFloat()) v = v.Select(x => Math.Round(x)).ToArray();
        return Make(v, shape, dtype);
    }

    public static int Numel(int[] shape) => shape.Aggregate(1, (a, b) => a * b);

    /// <summary>Row-major multi-index of flat index i.</summary>
    public static int[] Unravel(int i, int[] shape)
    {
        var idx = new int[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            idx[d] = i % shape[d];
            i /= shape[d];
        }
        return idx;
    }

    public static int Ravel(int[] idx, int[] shape)
    {
        int i = 0;
        for (int d = 0; d < shape.Length; d++) i = i * shape[d] + idx[d];
        return i;
    }

    /// <summary>Element (broadcast) of a row-major array of shape <paramref name="shape"/> at output index <paramref name="outIdx"/>.</summary>
    public static double Broadcast(double[] v, int[] shape, int[] outIdx)
    {
        int lead = outIdx.Length - shape.Length;
        int i = 0;
        for (int d = 0; d < shape.Length; d++) i = i * shape[d] + (shape[d] == 1 ? 0 : outIdx[lead + d]);
        return v[i];
    }

    public static (double Rtol, double Atol) Tol(DType dtype) => dtype switch
    {
        DType.F64 => (1e-12, 1e-13),
        DType.F32 => (1e-5, 1e-6),
        _ => (0, 0),
    };

    public static void AssertClose(double[] expected, Tensor actual, DType dtype, string what)
    {
        var (rtol, atol) = Tol(dtype);
        TestUtil.AssertClose(expected, Values(actual), rtol, atol, what);
    }

    public static void AssertShape(int[] expected, Tensor t) => Assert.Equal(expected, t.Shape);
}
