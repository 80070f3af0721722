using System.Reflection;
using ILGPU;
using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Sass;
using ManagedTensor.Tests.Gpu;
using Xunit;

namespace ManagedTensor.Tests.Attention;

/// <summary>
/// Every attention kernel compiles to PTX for sm_89 and sm_90 (and assembles, when ptxas is installed).
/// Each PTX text is made once and shared by the tests (the tensor-core kernel takes about a second).
/// </summary>
public class AttentionPtxTests
{
    /// <summary>Every kernel instantiation the launchers use (F32, BF16, F16).</summary>
    public static TheoryData<string> Kernels => new(KernelMethods.Keys);

    private static readonly Dictionary<string, MethodInfo> KernelMethods = GpuAttention.KernelMethods().ToDictionary(k => k.Name, k => k.Method);

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, string), Lazy<string>> Compiled = new();

    private static string Ptx(string name, ILGPU.Runtime.Cuda.CudaArchitecture arch)
        => Compiled.GetOrAdd((name, arch.ToString()), _ => new Lazy<string>(() => PtxCompiler.Compile(KernelMethods[name], arch))).Value;

    [Theory, MemberData(nameof(Kernels))]
    public void Compiles_for_sm89_and_sm90(string name)
    {
        foreach (var arch in PtxCompiler.CiTargets)
        {
            var ptx = Ptx(name, arch);
            Assert.Contains(".entry", ptx);
            if (name.Contains("mma"))
            {
                string type = name.EndsWith("BF16") ? "bf16" : "f16";
                Assert.Contains($"mma.sync.aligned.m16n8k16.row.col.f32.{type}.{type}.f32", ptx);
                Assert.Contains($"cvt.rn.{type}x2.f32", ptx);
            }
        }
    }

    [PtxasTheory, MemberData(nameof(Kernels))]
    public void Assembles_with_ptxas(string name)
    {
        foreach (var arch in PtxCompiler.CiTargets)
        {
            var (ok, log) = CudaTools.Assemble(Ptx(name, arch), arch);
            Assert.True(ok, $"{name} for {arch}: {log}");
        }
    }

    /// <summary>
    /// The tensor-core kernels keep their fragments (64 scores and up to 64 outputs per lane) in registers:
    /// with ILGPU's O2 no stack frame and no spills (at O1 each inline-PTX output goes through a local
    /// slot, about 3 KB of stack per thread, so the GPU context should use O2).
    /// </summary>
    [PtxasTheory]
    [InlineData("attention_forward_mma_BF16")]
    [InlineData("attention_backward_dkdv_mma_BF16")]
    [InlineData("attention_backward_dq_mma_F16")]
    public void Tensor_core_kernels_have_no_spills_at_O2(string name)
    {
        var arch = PtxCompiler.Sm90;
        var ptx = PtxCompiler.Compile(KernelMethods[name], arch, configure: b => GpuContextOptions.Apply(b).Optimize(OptimizationLevel.O2));
        var (ok, log) = CudaTools.Assemble(ptx, arch);
        Assert.True(ok, log);
        Assert.Contains("0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads", log);
    }
}
