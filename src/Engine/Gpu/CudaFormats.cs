using System.Reflection;
using ILGPU.Runtime.Cuda;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Gpu;

/// <summary>
/// The kernel a CUDA device runs for a kernel written with the portable 16-bit formats: the same method with
/// <see cref="F16AsFloat"/> replaced by <see cref="F16Cvt"/> and (sm_80 and later) <see cref="BF16AsFloat"/> by
/// <see cref="BF16Cvt"/>, and the casts' codecs likewise (<see cref="F16CvtCodec"/>, <see cref="BF16CvtCodec"/>),
/// wherever they appear among its type arguments. The portable formats convert with integer
/// code, bit for bit the CPU backend's, so that ILGPU's CPU accelerator runs every kernel in CI; on a GPU that code is
/// pure overhead: an fp16 store is about 25 instructions with branches where cvt.rn.f16.f32 is one, which made the
/// fp16 GEMM epilogue and the attention backward's dS rounding several times larger than bf16's, and costs every fp16
/// elementwise kernel as much ALU time as its memory traffic on an H100. Both CUDA paths compile through here:
/// <see cref="KernelCache"/> (the device) and <see cref="PtxCompiler"/> (offline PTX for the tests and reports).
/// </summary>
internal static class CudaFormats
{
    /// <summary><paramref name="kernel"/> with the cvt formats of <paramref name="arch"/>; itself when it uses neither.</summary>
    public static MethodInfo For(MethodInfo kernel, CudaArchitecture arch)
    {
        if (!kernel.IsGenericMethod) return kernel;
        bool ampere = arch.Major >= 8; // cvt.rn.bf16x2.f32 needs sm_80; cvt.f32.f16 and cvt.rn.f16.f32 are everywhere
        Type Twin(Type t) =>
            t == typeof(F16AsFloat) ? typeof(F16Cvt)
            : t == typeof(F16Codec) ? typeof(F16CvtCodec)
            : t == typeof(BF16AsFloat) && ampere ? typeof(BF16Cvt)
            : t == typeof(BF16Codec) && ampere ? typeof(BF16CvtCodec)
            : t.IsConstructedGenericType ? t.GetGenericTypeDefinition().MakeGenericType(t.GetGenericArguments().Select(Twin).ToArray())
            : t;
        var args = kernel.GetGenericArguments();
        var twins = args.Select(Twin).ToArray();
        return args.SequenceEqual(twins) ? kernel : kernel.GetGenericMethodDefinition().MakeGenericMethod(twins);
    }
}
