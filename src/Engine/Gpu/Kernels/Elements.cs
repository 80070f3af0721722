using ILGPU;

namespace ManagedTensor.Gpu.Kernels;

// How kernels read and write each dtype. Device storages hold F16 and BF16 as their 16 bits (ushort):
// ILGPU has no bfloat16, and its Half truncates float -> half on the CPU accelerator, so both
// conversions are done here with integer operations, the same on every accelerator and bit for bit
// the same as the CPU backend's (System.Half, BFloat16.FromFloat: round to nearest even).

/// <summary>A storage element (TS) loaded as the type an op computes in (TC) and stored back. F16/BF16 compute in float.</summary>
internal interface IElement<TS, TC> where TS : unmanaged where TC : unmanaged
{
    TC Load(TS s);
    TS Store(TC c);
}

internal readonly struct Same<T> : IElement<T, T> where T : unmanaged
{
    public T Load(T s) => s;
    public T Store(T c) => c;
}

internal readonly struct F16AsFloat : IElement<ushort, float>
{
    public float Load(ushort s) => HalfBits.ToFloat(s);
    public ushort Store(float c) => HalfBits.FromFloat(c);
}

internal readonly struct BF16AsFloat : IElement<ushort, float>
{
    public float Load(ushort s) => BFloat16Bits.ToFloat(s);
    public ushort Store(float c) => BFloat16Bits.FromFloat(c);
}

/// <summary>
/// Every conversion a cast needs, for one dtype's device type, with the CPU backend's rules
/// (ElementCast): float to integer truncates toward zero (NaN to 0, saturating at the long range),
/// integer to narrower integer keeps the low bits, float to float rounds to nearest even.
/// </summary>
internal interface ICodec<T> where T : unmanaged
{
    double ToDouble(T x);
    T FromDouble(double v);
    long ToLong(T x);
    T FromLong(long v);
    float ToFloat(T x);
    T FromFloat(float v);
}

internal readonly struct F32Codec : ICodec<float>
{
    public double ToDouble(float x) => x;
    public float FromDouble(double v) => (float)v;
    public long ToLong(float x) => (long)x;
    public float FromLong(long v) => (float)(double)v;
    public float ToFloat(float x) => x;
    public float FromFloat(float v) => v;
}

internal readonly struct F64Codec : ICodec<double>
{
    public double ToDouble(double x) => x;
    public double FromDouble(double v) => v;
    public long ToLong(double x) => (long)x;
    public double FromLong(long v) => v;
    public float ToFloat(double x) => (float)x;
    public double FromFloat(float v) => v;
}

internal readonly struct F16Codec : ICodec<ushort>
{
    public double ToDouble(ushort x) => HalfBits.ToFloat(x);
    public ushort FromDouble(double v) => HalfBits.FromDouble(v);
    public long ToLong(ushort x) => (long)HalfBits.ToFloat(x);
    public ushort FromLong(long v) => HalfBits.FromDouble(v);
    public float ToFloat(ushort x) => HalfBits.ToFloat(x);
    public ushort FromFloat(float v) => HalfBits.FromFloat(v);
}

internal readonly struct BF16Codec : ICodec<ushort>
{
    public double ToDouble(ushort x) => BFloat16Bits.ToFloat(x);
    public ushort FromDouble(double v) => BFloat16Bits.FromFloat((float)v); // the CPU rounds through float too
    public long ToLong(ushort x) => (long)BFloat16Bits.ToFloat(x);
    public ushort FromLong(long v) => BFloat16Bits.FromFloat((float)(double)v);
    public float ToFloat(ushort x) => BFloat16Bits.ToFloat(x);
    public ushort FromFloat(float v) => BFloat16Bits.FromFloat(v);
}

internal readonly struct I32Codec : ICodec<int>
{
    public double ToDouble(int x) => x;
    public int FromDouble(double v) => (int)(long)v;
    public long ToLong(int x) => x;
    public int FromLong(long v) => (int)v;
    public float ToFloat(int x) => x;
    public int FromFloat(float v) => (int)(long)v;
}

internal readonly struct I64Codec : ICodec<long>
{
    public double ToDouble(long x) => x;
    public long FromDouble(double v) => (long)v;
    public long ToLong(long x) => x;
    public long FromLong(long v) => v;
    public float ToFloat(long x) => x;
    public long FromFloat(float v) => (long)v;
}

internal readonly struct I8Codec : ICodec<sbyte>
{
    public double ToDouble(sbyte x) => x;
    public sbyte FromDouble(double v) => (sbyte)(long)v;
    public long ToLong(sbyte x) => x;
    public sbyte FromLong(long v) => (sbyte)v;
    public float ToFloat(sbyte x) => x;
    public sbyte FromFloat(float v) => (sbyte)(long)v;
}

internal readonly struct U8Codec : ICodec<byte>
{
    public double ToDouble(byte x) => x;
    public byte FromDouble(double v) => (byte)(long)v;
    public long ToLong(byte x) => x;
    public byte FromLong(long v) => (byte)v;
    public float ToFloat(byte x) => x;
    public byte FromFloat(float v) => (byte)(long)v;
}

/// <summary>IEEE binary16 from and to its bits.</summary>
internal static class HalfBits
{
    public static float ToFloat(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        uint exp = (uint)(h >> 10) & 0x1F;
        uint mant = (uint)h & 0x3FF;
        if (exp == 0x1F) return Interop.IntAsFloat(sign | 0x7F800000u | (mant << 13)); // inf, NaN
        if (exp == 0)
        {
            float sub = mant * 5.9604644775390625e-8f; // mant * 2^-24, exact (zero and subnormals)
            return sign != 0 ? -sub : sub;
        }
        return Interop.IntAsFloat(sign | ((exp + 112) << 23) | (mant << 13));
    }

    /// <summary>float -> half, round to nearest even; overflow gives infinity, NaN a quiet NaN.</summary>
    public static ushort FromFloat(float f)
    {
        uint x = Interop.FloatAsInt(f);
        uint sign = (x >> 16) & 0x8000;
        uint ax = x & 0x7FFFFFFF;
        if (ax >= 0x7F800000) return (ushort)(sign | (ax > 0x7F800000 ? 0x7E00u : 0x7C00u));
        if (ax >= 0x477FF000) return (ushort)(sign | 0x7C00); // >= 65520 rounds to infinity
        if (ax < 0x38800000)
        {
            // |f| < 2^-14: a subnormal half m * 2^-24, m = round(mant * 2^(exp - 126))
            if (ax < 0x33000000) return (ushort)sign; // below 2^-25: rounds to zero
            uint mant = (ax & 0x7FFFFF) | 0x800000;
            int shift = 126 - (int)(ax >> 23); // 14 .. 24
            uint m = mant >> shift;
            uint rem = mant & ((1u << shift) - 1);
            uint half = 1u << (shift - 1);
            if (rem > half || (rem == half && (m & 1) != 0)) m++;
            return (ushort)(sign | m);
        }
        // Normal: rebias the exponent (127 -> 15) and keep 10 mantissa bits, rounding the 13 dropped ones.
        uint h = (ax - 0x38000000) >> 13;
        uint low = ax & 0x1FFF;
        if (low > 0x1000 || (low == 0x1000 && (h & 1) != 0)) h++; // a carry into the exponent is right
        return (ushort)(sign | h);
    }

    /// <summary>
    /// double -> half correctly rounded (as System.Half's conversion): round to float with round-to-odd
    /// (truncate, then set the last bit if anything was dropped), which float's 13 extra bits make exact
    /// for the second rounding to half.
    /// </summary>
    public static ushort FromDouble(double d)
    {
        float f = (float)d;
        if ((double)f != d && !double.IsNaN(d))
        {
            uint u = Interop.FloatAsInt(f);
            if (Math.Abs((double)f) > Math.Abs(d)) u--; // rounded away from zero: step back one ulp
            f = Interop.IntAsFloat(u | 1u);
        }
        return FromFloat(f);
    }
}

/// <summary>bfloat16 from and to its bits, as <see cref="BFloat16"/> (whose BitConverter calls ILGPU cannot compile).</summary>
internal static class BFloat16Bits
{
    public static float ToFloat(ushort b) => Interop.IntAsFloat((uint)b << 16);

    public static ushort FromFloat(float f)
    {
        uint u = Interop.FloatAsInt(f);
        if ((u & 0x7FFFFFFF) > 0x7F800000) return (ushort)((u >> 16) | 0x40); // quiet NaN
        u += 0x7FFFu + ((u >> 16) & 1u);
        return (ushort)(u >> 16);
    }
}
