using System.Reflection;
using ManagedTensor.Gpu.Bench.SgemmLadder;
using ManagedTensor.Gpu.Gemm;
using ManagedTensor.Gpu.Kernels;
using ManagedTensor.Gpu.Kernels.Attention;
using ManagedTensor.Gpu.Kernels.Quant;

namespace ManagedTensor.Gpu.Sass;

/// <summary>The kernels the report covers: the GEMM ladder and the tensor-core GEMM, attention forward, backward and decode, the selective scan and WKV, the quantized GEMV of decode.</summary>
public static class ReportKernels
{
    public static IEnumerable<ReportKernel> All()
    {
        static MethodInfo M(Type host, string name, params Type[] generic)
        {
            var m = host.GetMethod(name, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)!;
            return generic.Length == 0 ? m : m.MakeGenericMethod(generic);
        }
        yield return new("sgemm1 naive", "ladder", M(typeof(Sgemm1Naive), "Kernel"), 256);
        yield return new("sgemm2 shared tiles", "ladder", M(typeof(Sgemm2SharedTiles), "Kernel"), 256);
        yield return new("sgemm3 register-blocked NN", "gemm", M(typeof(Sgemm3RegisterBlocked), "Kernel", typeof(KInner), typeof(MnInner)), 256);
        yield return new("sgemm4 vectorized NN", "ladder", M(typeof(Sgemm4Vectorized), "Kernel", typeof(KInner), typeof(MnInner)), 256);
        yield return new("sgemm5 warp-tiled NN", "gemm", M(typeof(Sgemm5WarpTiled), "Kernel", typeof(KInner), typeof(MnInner)), 256);
        yield return new("sgemm5 warp-tiled NT", "gemm", M(typeof(Sgemm5WarpTiled), "Kernel", typeof(KInner), typeof(KInner)), 256);
        foreach (var (aK, bK, layout) in new[] { (true, false, "NN"), (true, true, "NT"), (false, false, "TN") })
            yield return new($"hgemm mma bf16 {layout}", "gemm", HgemmMma.Spec(DType.BF16, aK, bK, GemmPath.Async).Method, HgemmMma.Threads, MaxPerMma: 4);
        yield return new("hgemm mma f16 NT", "gemm", HgemmMma.Spec(DType.F16, true, true, GemmPath.Async).Method, HgemmMma.Threads, MaxPerMma: 4);
        // One HGMMA (wgmma.m64n128k16, issued by each warp of a warpgroup) is 16 HMMA of work per warp: its budget is 16 x 4.
        yield return new("hgemm wgmma bf16 NT", "gemm", HgemmWgmma.Spec(hopper: true).Method, HgemmWgmma.Threads, HgemmWgmma.SharedBytes, MaxPerMma: 64, Sm90aOnly: true);
        foreach (int d in new[] { 64, 128 })
        {
            var fwd = GpuAttention.ForwardSpec(DType.BF16, d, dropout: false, tensorCores: true);
            yield return new($"attention fwd mma bf16 d{d}", "attention", fwd.Method, AttentionMmaKernels.Threads, fwd.DynamicSharedBytes, MaxPerMma: 8);
        }
        foreach (int d in new[] { 64, 128 })
        {
            var bwd = GpuAttention.BackwardSpec(DType.BF16, d, dropout: false, tensorCores: true);
            yield return new($"attention bwd mma bf16 d{d}", "attention", bwd.Method, AttentionMmaBackwardKernels.Threads, bwd.DynamicSharedBytes);
        }
        // fp16 packs dS with one cvt as bf16 does (its integer rounding made this kernel 40% longer in its loop).
        var bwdF16 = GpuAttention.BackwardSpec(DType.F16, 128, dropout: false, tensorCores: true);
        yield return new("attention bwd mma f16 d128", "attention", bwdF16.Method, AttentionMmaBackwardKernels.Threads, bwdF16.DynamicSharedBytes);
        yield return new("attention fwd simt bf16", "fallback", M(typeof(AttentionSimtKernels), "Forward", typeof(ushort), typeof(BF16AsFloat)), AttentionSimtKernels.GroupSize);
        yield return new("attention bwd dq simt bf16", "fallback", M(typeof(AttentionSimtKernels), "BackwardDq", typeof(ushort), typeof(BF16AsFloat)), AttentionSimtKernels.GroupSize);
        yield return new("attention bwd dk/dv simt bf16", "fallback", M(typeof(AttentionSimtKernels), "BackwardDkDv", typeof(ushort), typeof(BF16AsFloat)), AttentionSimtKernels.GroupSize);
        foreach (int d in new[] { 64, 128 })
            yield return new($"attention decode bf16 d{d}", "decode", GpuAttention.DecodeSpec(DType.BF16, d, dropout: false).Method, AttentionDecodeKernels.GroupSize);
        yield return new("attention decode f32 d64", "decode", GpuAttention.DecodeSpec(DType.F32, 64, dropout: false).Method, AttentionDecodeKernels.GroupSize);
        // Sequence scans at Mamba's N = 16 and RWKV-6's head size 64, F32, launched as GpuBackend does on a GPU (256 and 64 threads).
        yield return new("selective scan fwd f32 N16", "scan", M(typeof(ScanKernels), "ForwardKernel", typeof(float)), 256, 2 * 256 * 4);
        yield return new("selective scan bwd f32 N16 chunk64", "scan", M(typeof(ScanKernels), "BackwardKernel", typeof(float)), 64, (64 + 8) * 64 * 4);
        yield return new("wkv6 fwd f32 K64", "scan", M(typeof(WkvKernels), "ForwardKernel", typeof(float)), 64, (64 * 64 + 8 * 64) * 4);
        yield return new("wkv6 bwd gr f32 K64", "scan", M(typeof(WkvKernels), "GrKernel", typeof(float)), 64, (64 * 64 + 4 * 64) * 4);
        yield return new("wkv6 bwd f32 K64", "scan", M(typeof(WkvKernels), "GradKernel", typeof(float)), 64, (64 * 64 + 10 * 64) * 4);
        // Decode's dequantizing GEMV with f16 activations, 256 threads as on a GPU: the hot loop's instructions per FFMA are
        // the instructions per weight value (one FFMA each at one token row), what decides whether it keeps up with memory.
        foreach (var format in QuantKernels.WeightFormats)
            yield return new($"qgemv {format} f16", "quant", QGemvKernels.Spec(format, DType.F16).Method, 256);
    }
}
