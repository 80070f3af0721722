using System.Runtime.CompilerServices;
using ILGPU;

namespace ManagedTensor.Gpu.Kernels;

// The 16-bit float formats of the GPU kernels, in one place: their bit conversions (HalfBits,
// BFloat16Bits: the only ones, used by every kernel and bit for bit the CPU backend's System.Half and
// BFloat16, NaN payloads included) and the trait the tensor-core kernels are generic over (IHalfFormat:
// the mma instruction and the packing of two floats into one operand register).
// Values travel as raw ushort bits: ILGPU has no bfloat16 type, and its Half truncates on the CPU
// accelerator. Kernels are written with F16AsFloat and BF16AsFloat (integer code, any accelerator); a kernel
// compiled for CUDA gets their cvt twins F16Cvt and BF16Cvt instead (CudaFormats), so no kernel chooses.

/// <summary>
/// A 16-bit float format as the tensor-core kernels use it: an <see cref="IElement{TS, TC}"/> (storage
/// ushort, computed in float; integer conversions, exact on every accelerator; cvt in the CUDA twins) plus the mma.m16n8k16
/// with fp32 accumulators and the packing of two floats into one operand register (lo in bits 0-15).
/// Inline PTX must be a constant string, so each format carries its own. <see cref="Mma"/> and
/// <see cref="Pack"/> are PTX only, with no CPU fallback inside: ILGPU compiles both sides of a
/// CudaAsm.IsSupported test into the PTX (ptxas drops the dead one later), which for 64 mma sites made
/// kernels of megabytes; kernels choose their path with a type parameter instead, and the CPU side
/// uses <see cref="PackBits"/> and <see cref="Gemm.WarpMma"/>'s emulation.
/// </summary>
internal interface IHalfFormat : IElement<ushort, float>
{
    /// <summary>
    /// D = A B + C for one warp, in the fragment layout of PTX's mma.m16n8k16 (g = lane / 4, t = lane % 4):
    /// A (16 x 16, row-major): a.X = A[g][2t..2t+1], a.Y = A[g+8][2t..], a.Z = A[g][2t+8..], a.W = A[g+8][2t+8..];
    /// B (16 x 8, k-major): b.X = B[2t..2t+1][g], b.Y = B[2t+8..2t+9][g];
    /// C, D (16 x 8): X, Y = C[g][2t], C[g][2t+1]; Z, W = C[g+8][2t], C[g+8][2t+1].
    /// CUDA only; <see cref="Gemm.WarpMma.Emulate{TF}"/> is its lane-exact twin.
    /// </summary>
    Float4 Mma(U32x4 a, U32x2 b, Float4 c);

    /// <summary>Two floats rounded to nearest even and packed (lo in bits 0-15) with one cvt: CUDA only.</summary>
    uint Pack(float lo, float hi);

    /// <summary>The same on any accelerator: integer code (bit for bit the CPU backend's rounding), one cvt in the CUDA twins.</summary>
    uint PackBits(float lo, float hi);
}

/// <summary>IEEE binary16 (fp16) computed in float.</summary>
internal readonly struct F16AsFloat : IHalfFormat
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(ushort s) => HalfBits.ToFloat(s);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort Store(float c) => HalfBits.FromFloat(c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float4 Mma(U32x4 a, U32x2 b, Float4 c) => Ptx.MmaF16(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Pack(float lo, float hi) => Ptx.PackF16x2(hi, lo);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint PackBits(float lo, float hi) => HalfBits.FromFloat(lo) | ((uint)HalfBits.FromFloat(hi) << 16);
}

/// <summary>bfloat16 (the top half of a float32) computed in float.</summary>
internal readonly struct BF16AsFloat : IHalfFormat
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(ushort s) => BFloat16Bits.ToFloat(s);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort Store(float c) => BFloat16Bits.FromFloat(c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float4 Mma(U32x4 a, U32x2 b, Float4 c) => Ptx.MmaBf16(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Pack(float lo, float hi) => Ptx.PackBf16x2(hi, lo);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint PackBits(float lo, float hi) => BFloat16Bits.FromFloat(lo) | ((uint)BFloat16Bits.FromFloat(hi) << 16);
}

/// <summary>
/// fp16 as a CUDA kernel runs it: <see cref="F16AsFloat"/> with every conversion one cvt instruction, where the
/// integer code takes about 10 (load) and 25 (store, with branches). Same values, except that a NaN comes out as the
/// canonical NaN. <see cref="CudaFormats"/> puts it in place of F16AsFloat in every kernel compiled for CUDA.
/// </summary>
internal readonly struct F16Cvt : IHalfFormat
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(ushort s) => Ptx.F16ToF32(s);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort Store(float c) => Ptx.F32ToF16(c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float4 Mma(U32x4 a, U32x2 b, Float4 c) => Ptx.MmaF16(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Pack(float lo, float hi) => Ptx.PackF16x2(hi, lo);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint PackBits(float lo, float hi) => Pack(lo, hi);
}

/// <summary>
/// bfloat16 as a CUDA kernel on sm_80 or later runs it (cvt.rn.bf16x2.f32 is Ampere's): loading is a shift already,
/// storing and packing are one cvt where the integer rounding takes six instructions. Same values, except NaN as above.
/// </summary>
internal readonly struct BF16Cvt : IHalfFormat
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(ushort s) => BFloat16Bits.ToFloat(s);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort Store(float c) => (ushort)Ptx.PackBf16x2(0f, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float4 Mma(U32x4 a, U32x2 b, Float4 c) => Ptx.MmaBf16(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Pack(float lo, float hi) => Ptx.PackBf16x2(hi, lo);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint PackBits(float lo, float hi) => Pack(lo, hi);
}

/// <summary>IEEE binary16 from and to its bits, exactly as System.Half (round to nearest even, NaN payloads kept).</summary>
internal static class HalfBits
{
    public static float ToFloat(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        uint exp = (uint)(h >> 10) & 0x1F;
        uint mant = (uint)h & 0x3FF;
        if (exp == 0x1F)                                                      // inf; NaN comes out quiet, payload kept
            return Interop.IntAsFloat(sign | 0x7F800000u | (mant << 13) | (mant != 0 ? 0x400000u : 0u));
        if (exp == 0)
        {
            float sub = mant * 5.9604644775390625e-8f;                       // mant * 2^-24, exact (zero and subnormals)
            return sign != 0 ? -sub : sub;
        }
        return Interop.IntAsFloat(sign | ((exp + 112) << 23) | (mant << 13)); // rebias 15 -> 127
    }

    /// <summary>float -> half, round to nearest even; overflow gives infinity; NaN a quiet NaN with the payload's top 10 bits.</summary>
    public static ushort FromFloat(float f)
    {
        uint x = Interop.FloatAsInt(f);
        uint sign = (x >> 16) & 0x8000;
        uint ax = x & 0x7FFFFFFF;
        if (ax > 0x7F800000) return (ushort)(sign | 0x7E00 | ((ax >> 13) & 0x3FF));
        if (ax >= 0x477FF000) return (ushort)(sign | 0x7C00);              // >= 65520 (and inf) rounds to infinity
        if (ax < 0x38800000)
        {
            // |f| < 2^-14: a subnormal half m * 2^-24, m = round(mant * 2^(exp - 126))
            if (ax < 0x33000000) return (ushort)sign;                      // below 2^-25: rounds to zero
            uint mant = (ax & 0x7FFFFF) | 0x800000;
            int shift = 126 - (int)(ax >> 23);                             // 14 .. 24
            uint m = mant >> shift;
            uint rem = mant & ((1u << shift) - 1);
            uint half = 1u << (shift - 1);
            if (rem > half || (rem == half && (m & 1) != 0)) m++;          // may carry into the smallest normal: still right
            return (ushort)(sign | m);
        }
        // Normal: rebias the exponent (127 -> 15) and keep 10 mantissa bits, rounding the 13 dropped ones.
        uint h = (ax - 0x38000000) >> 13;
        uint low = ax & 0x1FFF;
        if (low > 0x1000 || (low == 0x1000 && (h & 1) != 0)) h++;          // a carry into the exponent is right
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
        u += 0x7FFFu + ((u >> 16) & 1u);                                      // round to nearest even
        return (ushort)(u >> 16);
    }
}
