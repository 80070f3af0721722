using Xunit;
using static ManagedTensor.Tests.Engine.EngineRef;

namespace ManagedTensor.Tests.Engine;

/// <summary>Casts between dtypes: float rounding to F16/BF16, truncation to integers, integer wrap-around.</summary>
public class DTypeTests
{
    [Fact]
    public void Float32ToHalfRoundsToNearestEven()
    {
        float[] x = [1f, 0.1f, -2.5f, 65504f, 65520f, 1e-8f, 6e-8f, float.PositiveInfinity];
        // 0.1 -> 0x2E66 = 0.0999755859375; 65520 is the halfway point past the largest half and rounds to inf;
        // 1e-8 is below half the smallest subnormal (2^-24 ~ 5.96e-8); 6e-8 rounds to that subnormal.
        double[] expected = [1, 0.0999755859375, -2.5, 65504, double.PositiveInfinity, 0, Math.Pow(2, -24), double.PositiveInfinity];
        var h = Tensor.FromArray(x).To(DType.F16);
        Assert.Equal(DType.F16, h.DType);
        Assert.Equal(expected, Values(h));
        Assert.Equal(expected, Values(h.To(DType.F32)));
    }

    [Fact]
    public void Float32ToBFloat16RoundsToNearestEven()
    {
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
        // 0.1f -> 0x3DCD = 0.10009765625. 1 + 2^-8 + 2^-20 is just above the tie: rounds up.
        float[] x = [1f, 1f + 1f / 256, 1f + 3f / 256, 0.1f, 1f + 1f / 256 + 1f / (1 << 20), -3.0f, float.NegativeInfinity];
        double[] expected = [1, 1, 1 + 4.0 / 256, 0.10009765625, 1 + 2.0 / 256, -3, double.NegativeInfinity];
        var b = Tensor.FromArray(x).To(DType.BF16);
        Assert.Equal(expected, Values(b));
        Assert.Equal(expected, Values(b.To(DType.F32)));
        Assert.Equal(expected, Values(b.To(DType.F64)));
        Assert.True(float.IsNaN(Tensor.FromArray([float.NaN]).To(DType.BF16).To(DType.F32).ToArray<float>()[0]));
    }

    [Fact]
    public void LongRunsUseTheVectorPathsAndMatchScalarRounding()
    {
        // 1000 values (several SIMD blocks plus a tail), compared with the scalar conversions element by element.
        var rng = new Random(5);
        var x = Enumerable.Range(0, 1000).Select(_ => (float)((rng.NextDouble() - 0.5) * Math.Pow(2, rng.Next(-30, 30)))).ToArray();
        var t = Tensor.FromArray(x);
        Assert.Equal(x.Select(v => BFloat16.FromFloat(v).Bits).ToArray(), t.To(DType.BF16).ToArray<BFloat16>().Select(b => b.Bits).ToArray());
        Assert.Equal(x.Select(v => (Half)v).ToArray(), t.To(DType.F16).ToArray<Half>());
        Assert.Equal(x.Select(v => (double)v).ToArray(), t.To(DType.F64).ToArray<double>());
        Assert.Equal(x, t.To(DType.F64).To(DType.F32).ToArray<float>());
        Assert.Equal(x.Select(v => BFloat16.FromFloat(v).ToFloat()).ToArray(), t.To(DType.BF16).To(DType.F32).ToArray<float>());
    }

    [Fact]
    public void FloatToIntegerTruncatesTowardZero()
    {
        var x = Tensor.FromArray([-2.7f, -0.5f, 0.5f, 2.7f, 3f, -3f]);
        Assert.Equal(new[] { -2, 0, 0, 2, 3, -3 }, x.To(DType.I32).ToArray<int>());
        Assert.Equal(new long[] { -2, 0, 0, 2, 3, -3 }, x.To(DType.I64).ToArray<long>());
        Assert.Equal(new long[] { -2, 0, 0, 2, 3, -3 }, x.To(DType.F64).To(DType.I64).ToArray<long>());
    }

    [Fact]
    public void IntegerNarrowingWraps()
    {
        var x = Tensor.FromArray(new long[] { 300, -129, 127, 5_000_000_000 });
        Assert.Equal(new sbyte[] { 44, 127, 127, unchecked((sbyte)5_000_000_000) }, x.To(DType.I8).ToArray<sbyte>());
        Assert.Equal(new byte[] { 44, 127, 127, unchecked((byte)5_000_000_000) }, x.To(DType.U8).ToArray<byte>());
        Assert.Equal(new[] { 300, -129, 127, unchecked((int)5_000_000_000) }, x.To(DType.I32).ToArray<int>());
        Assert.Equal(new double[] { 300, -129, 127, 5_000_000_000 }, x.To(DType.F64).ToArray<double>());
        Assert.Equal(new float[] { 255, 0, 7 }, Tensor.FromArray(new byte[] { 255, 0, 7 }).To(DType.F32).ToArray<float>());
    }

    [Fact]
    public void StridedCastsAndBroadcastSources()
    {
        var x = Random([5, 7], 3, DType.F32).Transpose(0, 1);   // (7, 5) view
        foreach (var dt in new[] { DType.F64, DType.F16, DType.BF16, DType.I32 })
        {
            var y = x.To(dt);
            Assert.True(y.IsContiguous);
            var expected = Values(x).Select(v => dt switch
            {
                DType.F64 => v,
                DType.F16 => (double)(Half)(float)v,
                DType.BF16 => BFloat16.FromFloat((float)v).ToFloat(),
                _ => (double)(int)v,
            }).ToArray();
            Assert.Equal(expected, Values(y));
        }
        // A stride-0 source (expanded) copied into a strided destination view.
        var dst = Tensor.Zeros([4, 6], DType.F64);
        dst.Narrow(1, 1, 3).CopyFrom_(Tensor.FromArray([1f, 2f, 3f]));
        var v = Values(dst);
        for (int r = 0; r < 4; r++)
            Assert.Equal(new double[] { 0, 1, 2, 3, 0, 0 }, v.Skip(r * 6).Take(6).ToArray());
    }

    [Fact]
    public void FillEveryDtype()
    {
        foreach (DType dt in DTypeInfo.ElementTypes)
        {
            var t = Tensor.Full([3, 5], 2.75, dt);
            double expected = dt.IsFloat() ? 2.75 : 2;
            Assert.All(Values(t), v => Assert.Equal(expected, v));
        }
        var z = Tensor.Zeros([4, 4]);
        z.Narrow(0, 1, 2).Narrow(1, 1, 2).Fill_(7);
        Assert.Equal(new double[] { 0, 0, 0, 0, 0, 7, 7, 0, 0, 7, 7, 0, 0, 0, 0, 0 }, Values(z));
    }

    [Fact]
    public void CopyShapeMismatchNamesBothShapes()
    {
        var e = Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, 3]).CopyFrom_(Tensor.Zeros([4])));
        Assert.Contains("[2, 3]", e.Message);
        Assert.Contains("[4]", e.Message);
    }
}
