using ILGPU;

namespace ManagedTensor.Gpu.Kernels;

// How kernels read and write each dtype: one trait family for every GPU kernel. IElement<TS, TC> loads a
// storage element as the type an op computes in and stores it back (Same<T>; F16AsFloat and BF16AsFloat,
// which are also the tensor-core formats, in HalfFormats.cs); ICodec<T> is what a cast needs. Device
// storages hold F16 and BF16 as their 16 bits (ushort), converted with HalfFormats.cs's integer code,
// the same on every accelerator and bit for bit the CPU backend's; a kernel compiled for CUDA converts with
// single cvt instructions instead (CudaFormats), the same values but for NaN payloads.

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

/// <summary>
/// <see cref="F16Codec"/> as a CUDA kernel runs it (<see cref="CudaFormats"/>): float conversions are one cvt each.
/// From double and long it keeps the integer rounding, which rounds once (a cvt through float would round twice).
/// </summary>
internal readonly struct F16CvtCodec : ICodec<ushort>
{
    public double ToDouble(ushort x) => Ptx.F16ToF32(x);
    public ushort FromDouble(double v) => HalfBits.FromDouble(v);
    public long ToLong(ushort x) => (long)Ptx.F16ToF32(x);
    public ushort FromLong(long v) => HalfBits.FromDouble(v);
    public float ToFloat(ushort x) => Ptx.F16ToF32(x);
    public ushort FromFloat(float v) => Ptx.F32ToF16(v);
}

/// <summary><see cref="BF16Codec"/> on CUDA from sm_80: rounding to bf16 is one cvt (the CPU rounds through float too).</summary>
internal readonly struct BF16CvtCodec : ICodec<ushort>
{
    public double ToDouble(ushort x) => BFloat16Bits.ToFloat(x);
    public ushort FromDouble(double v) => FromFloat((float)v);
    public long ToLong(ushort x) => (long)BFloat16Bits.ToFloat(x);
    public ushort FromLong(long v) => FromFloat((float)(double)v);
    public float ToFloat(ushort x) => BFloat16Bits.ToFloat(x);
    public ushort FromFloat(float v) => (ushort)Ptx.PackBf16x2(0f, v);
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
