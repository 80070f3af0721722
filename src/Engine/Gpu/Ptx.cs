using ILGPU.IR.Intrinsics;

namespace ManagedTensor.Gpu;

/// <summary>Four floats; as a field of a view element or a local, ILGPU moves it with one 128-bit access (ld.v4.f32) where it can prove 16-byte alignment.</summary>
public struct Float4
{
    public float X, Y, Z, W;

    public Float4(float x, float y, float z, float w) => (X, Y, Z, W) = (x, y, z, w);
}

/// <summary>Four 32-bit registers (an mma A fragment, an ldmatrix.x4 result).</summary>
public struct U32x4
{
    public uint X, Y, Z, W;
}

/// <summary>Two 32-bit registers (an mma B fragment).</summary>
public struct U32x2
{
    public uint X, Y;
}

/// <summary>
/// PTX instructions with register results, through <see cref="PtxInline"/>. Only the PTX backend can run
/// them: every call site is guarded by <c>CudaAsm.IsSupported</c> and has a plain C# path for the CPU
/// accelerator (see WarpMma for the emulation of the tensor-core ones).
/// </summary>
public static class Ptx
{
    private static NotSupportedException PtxOnly() => new("this PTX instruction runs on the CUDA accelerator only; guard the call with CudaAsm.IsSupported");

    /// <summary>The 32-bit shared-window address of the kernel's first static shared allocation
    /// (ILGPU names static shared arrays __shared_alloca0, 1, ... in allocation order).</summary>
    [IntrinsicImplementation, Ptx("mov.u32 %0, __shared_alloca0;")]
    public static uint SharedBase() => throw PtxOnly();

    /// <summary>Four 8x8 b16 matrices from shared memory; lane l gives the address of row l % 8 of matrix l / 8
    /// and receives, of each matrix, row lane / 4, elements 2 (lane % 4) and 2 (lane % 4) + 1.</summary>
    [IntrinsicImplementation, Ptx("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];")]
    public static U32x4 LdMatrixX4(uint sharedAddress) => throw PtxOnly();

    /// <summary>As <see cref="LdMatrixX4"/> but each matrix transposed: lane receives column lane / 4, rows 2 (lane % 4) and 2 (lane % 4) + 1.</summary>
    [IntrinsicImplementation, Ptx("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];")]
    public static U32x4 LdMatrixX4Trans(uint sharedAddress) => throw PtxOnly();

    /// <summary>D = A B + C for a 16x8x16 tile, bf16 inputs, fp32 accumulators (a warp-wide instruction).</summary>
    [IntrinsicImplementation, Ptx("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};")]
    public static Float4 MmaBf16(U32x4 a, U32x2 b, Float4 c) => throw PtxOnly();

    /// <summary>As <see cref="MmaBf16"/> with fp16 inputs.</summary>
    [IntrinsicImplementation, Ptx("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};")]
    public static Float4 MmaF16(U32x4 a, U32x2 b, Float4 c) => throw PtxOnly();

    /// <summary>Two floats to a packed bf16 pair, round to nearest even; the FIRST source fills the upper half.</summary>
    [IntrinsicImplementation, Ptx("cvt.rn.bf16x2.f32 %0, %1, %2;")]
    public static uint PackBf16x2(float hi, float lo) => throw PtxOnly();

    /// <summary>Two floats to a packed fp16 pair, round to nearest even; the FIRST source fills the upper half.</summary>
    [IntrinsicImplementation, Ptx("cvt.rn.f16x2.f32 %0, %1, %2;")]
    public static uint PackF16x2(float hi, float lo) => throw PtxOnly();

    /// <summary>tanh with a relative error near 2^-11 (sm_75+), one instruction.</summary>
    [IntrinsicImplementation, Ptx("tanh.approx.f32 %0, %1;")]
    public static float TanhApprox(float x) => throw PtxOnly();

    /// <summary>float -> fp16 bits, round to nearest even.</summary>
    [IntrinsicImplementation, Ptx("cvt.rn.f16.f32 %0, %1;")]
    public static ushort F32ToF16(float x) => throw PtxOnly();

    /// <summary>fp16 bits -> float (exact).</summary>
    [IntrinsicImplementation, Ptx("cvt.f32.f16 %0, %1;")]
    public static float F16ToF32(ushort bits) => throw PtxOnly();
}
