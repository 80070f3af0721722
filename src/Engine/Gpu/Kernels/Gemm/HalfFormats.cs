using ILGPU;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>A 16-bit float storage format for the tensor-core GEMM: its mma instruction and its conversions.
/// Values travel as raw ushort bits (ILGPU has no bf16 type); a uint packs two, low half first.</summary>
public interface IHalfFormat
{
    /// <summary>D = A B + C for one m16n8k16 tile (a warp-wide operation).</summary>
    Float4 Mma(U32x4 a, U32x2 b, Float4 c);

    float ToFloat(ushort bits);

    /// <summary>Round to nearest even.</summary>
    ushort FromFloat(float value);
}

/// <summary>bfloat16: the top half of a float32.</summary>
public struct Bf16 : IHalfFormat
{
    public readonly Float4 Mma(U32x4 a, U32x2 b, Float4 c) =>
        CudaAsm.IsSupported ? Ptx.MmaBf16(a, b, c) : WarpMma.Emulate<Bf16>(a, b, c);

    public readonly float ToFloat(ushort bits) => Interop.IntAsFloat((uint)bits << 16);

    public readonly ushort FromFloat(float value)
    {
        uint u = Interop.FloatAsInt(value);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)((u >> 16) | 0x40u); // NaN stays a quiet NaN
        return (ushort)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);                  // as BFloat16.FromFloat
    }
}

/// <summary>IEEE fp16 (binary16). On the GPU one cvt instruction each way; the plain path does the same in integers.</summary>
public struct F16 : IHalfFormat
{
    public readonly Float4 Mma(U32x4 a, U32x2 b, Float4 c) =>
        CudaAsm.IsSupported ? Ptx.MmaF16(a, b, c) : WarpMma.Emulate<F16>(a, b, c);

    public readonly float ToFloat(ushort bits) => CudaAsm.IsSupported ? Ptx.F16ToF32(bits) : HalfBits.ToFloat(bits);

    public readonly ushort FromFloat(float value) => CudaAsm.IsSupported ? Ptx.F32ToF16(value) : HalfBits.FromFloat(value);
}

/// <summary>binary16 &lt;-&gt; binary32 in integer arithmetic (ILGPU kernels have no System.Half bit access).</summary>
public static class HalfBits
{
    public static float ToFloat(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16, exp = (uint)(h >> 10) & 0x1F, man = (uint)h & 0x3FF;
        if (exp == 0x1F) return Interop.IntAsFloat(sign | 0x7F800000u | (man << 13));       // inf, NaN
        if (exp != 0) return Interop.IntAsFloat(sign | ((exp + 112) << 23) | (man << 13));   // normal: rebias 15 -> 127
        // Zero or subnormal: man * 2^-24, exact in float32.
        float v = man * 5.9604645e-8f;
        return sign != 0 ? -v : v;
    }

    public static ushort FromFloat(float f)
    {
        uint u = Interop.FloatAsInt(f);
        uint sign = (u >> 16) & 0x8000;
        uint abs = u & 0x7FFFFFFF;
        if (abs > 0x7F800000) return (ushort)(sign | 0x7E00 | ((abs >> 13) & 0x3FF));     // NaN (quiet)
        if (abs >= 0x477FF000) return (ushort)(sign | 0x7C00);                              // rounds to >= 65520: inf
        if (abs >= 0x38800000)                                                              // normal half (>= 2^-14)
        {
            uint rounded = abs + 0xFFF + ((abs >> 13) & 1);                                  // nearest even on the 13 dropped bits
            return (ushort)(sign | ((rounded - 0x38000000) >> 13));                          // rebias 127 -> 15
        }
        if (abs < 0x33000000) return (ushort)sign;                                          // below half the smallest subnormal: 0
        // Subnormal half: m = round(f * 2^24) = round(mantissa * 2^(e - 126)), mantissa with its implicit bit.
        int e = (int)(abs >> 23), shift = 126 - e;                                           // 14 .. 24
        uint mantissa = (abs & 0x7FFFFF) | 0x800000;
        uint m = mantissa >> shift;
        uint rest = mantissa & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rest > half || (rest == half && (m & 1) != 0)) m++;                               // may carry into the smallest normal: still right
        return (ushort)(sign | m);
    }
}
