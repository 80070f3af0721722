using System.Runtime.CompilerServices;
using ILGPU.Runtime.Cuda;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Gpu.Kernels.Attention;

/// <summary>
/// How a kernel reads and writes one stored element. The attention kernels are generic over the
/// storage type TS and one of these structs, and compute in float32: float32 storage, or 16-bit
/// storage (IEEE half, bfloat16) kept as raw ushort bits on the device.
/// </summary>
public interface IElement<TS> where TS : unmanaged
{
    float ToFloat(TS x);
    TS FromFloat(float x);
}

public readonly struct F32Element : IElement<float>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float ToFloat(float x) => x;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float FromFloat(float x) => x;
}

/// <summary>
/// A 16-bit element that the tensor cores take: packing two floats into the operand register format and
/// the m16n8k16 mma.sync with float32 accumulators. The PTX strings differ per type, and inline PTX must
/// be a constant, so each type carries its own.
/// </summary>
public interface IMmaElement : IElement<ushort>
{
    /// <summary>Two floats as a packed pair (lo in bits 0-15), rounded to nearest even, with one cvt (CUDA only).</summary>
    uint PackPtx(float lo, float hi);

    /// <summary>The same with integer code, on any accelerator.</summary>
    uint PackBits(float lo, float hi);

    /// <summary>
    /// c + A B for one warp: A 16 x 16 (a0..a3), B 16 x 8 (b0, b1), C 16 x 8 float32, in the fragment
    /// layout of PTX's mma.m16n8k16 (see <see cref="Frag"/>). Only on a CUDA accelerator.
    /// </summary>
    Frag Mma(Frag c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1);
}

/// <summary>
/// One lane's share of a 16 x 8 float32 tile in the mma.m16n8k16 layout: with g = lane / 4 and
/// t = lane % 4, C0 and C1 are (row g, columns 2t and 2t + 1), C2 and C3 the same columns of row g + 8.
/// A (16 x 16, row-major) sits in a0: (row g, k 2t..2t+1), a1: (row g + 8, same k), a2: (row g, k 8 + 2t..),
/// a3: (row g + 8, k 8 + 2t..); B (16 x 8, k-major) in b0: (k 2t..2t+1, column g), b1: (k 8 + 2t.., column g);
/// each register holds two 16-bit values, the lower k (or column) in the low half.
/// Passed by value so ILGPU keeps every field in a register.
/// </summary>
public struct Frag
{
    public float C0, C1, C2, C3;
}

/// <summary>bfloat16: the top half of a float32; rounding to nearest even on the way back.</summary>
public readonly struct BF16Element : IMmaElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float ToFloat(ushort x) => BFloat16Bits.ToFloat(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort FromFloat(float x) => BFloat16Bits.FromFloat(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint PackPtx(float lo, float hi)
    {
        CudaAsm.Emit("cvt.rn.bf16x2.f32 %0, %1, %2;", out uint packed, hi, lo); // the first source fills the upper half
        return packed;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint PackBits(float lo, float hi) => BFloat16Bits.FromFloat(lo) | ((uint)BFloat16Bits.FromFloat(hi) << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Frag Mma(Frag c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1)
    {
        Ref<float> r0 = c.C0, r1 = c.C1, r2 = c.C2, r3 = c.C3;
        Input<uint> x0 = a0, x1 = a1, x2 = a2, x3 = a3, y0 = b0, y1 = b1;
        CudaAsm.EmitRef("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};",
            ref r0, ref r1, ref r2, ref r3, ref x0, ref x1, ref x2, ref x3, ref y0, ref y1);
        return new Frag { C0 = r0.Value, C1 = r1.Value, C2 = r2.Value, C3 = r3.Value };
    }
}

/// <summary>
/// IEEE binary16: cvt on the GPU, the integer conversions of <see cref="HalfBits"/> elsewhere (ILGPU's
/// Half truncates on the CPU accelerator); both round to nearest even, as System.Half.
/// </summary>
public readonly struct F16Element : IMmaElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float ToFloat(ushort x)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("cvt.f32.f16 %0, %1;", out float f, x);
            return f;
        }
        return HalfBits.ToFloat(x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort FromFloat(float x)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("cvt.rn.f16.f32 %0, %1;", out ushort h, x);
            return h;
        }
        return HalfBits.FromFloat(x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint PackPtx(float lo, float hi)
    {
        CudaAsm.Emit("cvt.rn.f16x2.f32 %0, %1, %2;", out uint packed, hi, lo);
        return packed;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint PackBits(float lo, float hi) => HalfBits.FromFloat(lo) | ((uint)HalfBits.FromFloat(hi) << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Frag Mma(Frag c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1)
    {
        Ref<float> r0 = c.C0, r1 = c.C1, r2 = c.C2, r3 = c.C3;
        Input<uint> x0 = a0, x1 = a1, x2 = a2, x3 = a3, y0 = b0, y1 = b1;
        CudaAsm.EmitRef("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};",
            ref r0, ref r1, ref r2, ref r3, ref x0, ref x1, ref x2, ref x3, ref y0, ref y1);
        return new Frag { C0 = r0.Value, C1 = r1.Value, C2 = r2.Value, C3 = r3.Value };
    }
}
