using ILGPU;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu.Kernels.Quant;

/// <summary>
/// How the quantized-matmul kernels read and write activations of one dtype (storage type <typeparamref name="T"/>):
/// four values as floats for the GEMV's float dot products, eight values packed as the 16-bit operand format of the
/// tensor-core GEMM (f16 activations feed f16 mma; bf16 and f32 feed bf16 mma: bf16's range is float32's, so no
/// activation overflows), and the rounding of results. Views are aligned by the launchers (see QuantKernels.Aligned).
/// </summary>
internal interface IActivation<T> where T : unmanaged
{
    /// <summary>x[i..i+3] as floats (i a multiple of 4).</summary>
    Float4 Load4(ArrayView<T> x, int i);

    /// <summary>x[i..i+7] in the mma operand format, two values per register, the lower index in the low half (i a multiple of 8).</summary>
    U32x4 LoadOperand8(ArrayView<T> x, int i);

    /// <summary>Two floats rounded to the mma operand format and packed (lo in bits 0-15).</summary>
    uint PackOperand(float lo, float hi);

    /// <summary>A result rounded to the storage type (nearest even).</summary>
    T Store(float v);

    /// <summary>D = A B + C for one m16n8k16 tile in the operand format, fp32 accumulators (a warp-wide PTX instruction).</summary>
    Float4 Mma(U32x4 a, U32x2 b, Float4 c);

    /// <summary>One 16-bit operand as a float (the GEMM's plain paths).</summary>
    float OperandToFloat(uint bits);
}

/// <summary>float32 activations; bf16 operands for the tensor cores.</summary>
internal readonly struct F32Activation : IActivation<float>
{
    public Float4 Load4(ArrayView<float> x, int i) => x.Cast<Float4>()[i >> 2];

    public U32x4 LoadOperand8(ArrayView<float> x, int i)
    {
        var v = x.Cast<Float4>();
        Float4 a = v[i >> 2], b = v[(i >> 2) + 1];
        return new U32x4 { X = PackOperand(a.X, a.Y), Y = PackOperand(a.Z, a.W), Z = PackOperand(b.X, b.Y), W = PackOperand(b.Z, b.W) };
    }

    public uint PackOperand(float lo, float hi) =>
        CudaAsm.IsSupported ? Ptx.PackBf16x2(hi, lo) : BFloat16Bits.FromFloat(lo) | ((uint)BFloat16Bits.FromFloat(hi) << 16);

    public float Store(float v) => v;

    public Float4 Mma(U32x4 a, U32x2 b, Float4 c) => Ptx.MmaBf16(a, b, c);

    public float OperandToFloat(uint bits) => Interop.IntAsFloat(bits << 16);
}

/// <summary>fp16 activations (bits in ushort); fp16 operands, copied as they are.</summary>
internal readonly struct F16Activation : IActivation<ushort>
{
    public Float4 Load4(ArrayView<ushort> x, int i)
    {
        var u = x.Cast<U32x2>()[i >> 2];
        return new(ToFloat((ushort)u.X), ToFloat((ushort)(u.X >> 16)), ToFloat((ushort)u.Y), ToFloat((ushort)(u.Y >> 16)));
    }

    private static float ToFloat(ushort h) => CudaAsm.IsSupported ? Ptx.F16ToF32(h) : HalfBits.ToFloat(h);

    public U32x4 LoadOperand8(ArrayView<ushort> x, int i) => x.Cast<U32x4>()[i >> 3];

    public uint PackOperand(float lo, float hi) =>
        CudaAsm.IsSupported ? Ptx.PackF16x2(hi, lo) : HalfBits.FromFloat(lo) | ((uint)HalfBits.FromFloat(hi) << 16);

    public ushort Store(float v) => CudaAsm.IsSupported ? Ptx.F32ToF16(v) : HalfBits.FromFloat(v);

    public Float4 Mma(U32x4 a, U32x2 b, Float4 c) => Ptx.MmaF16(a, b, c);

    public float OperandToFloat(uint bits) => HalfBits.ToFloat((ushort)bits);
}

/// <summary>bfloat16 activations (bits in ushort); bf16 operands, copied as they are.</summary>
internal readonly struct BF16Activation : IActivation<ushort>
{
    public Float4 Load4(ArrayView<ushort> x, int i)
    {
        var u = x.Cast<U32x2>()[i >> 2];
        return new(Interop.IntAsFloat(u.X << 16), Interop.IntAsFloat(u.X & 0xFFFF0000u), Interop.IntAsFloat(u.Y << 16), Interop.IntAsFloat(u.Y & 0xFFFF0000u));
    }

    public U32x4 LoadOperand8(ArrayView<ushort> x, int i) => x.Cast<U32x4>()[i >> 3];

    public uint PackOperand(float lo, float hi) =>
        CudaAsm.IsSupported ? Ptx.PackBf16x2(hi, lo) : BFloat16Bits.FromFloat(lo) | ((uint)BFloat16Bits.FromFloat(hi) << 16);

    public ushort Store(float v) => BFloat16Bits.FromFloat(v);

    public Float4 Mma(U32x4 a, U32x2 b, Float4 c) => Ptx.MmaBf16(a, b, c);

    public float OperandToFloat(uint bits) => Interop.IntAsFloat(bits << 16);
}
