using System.Reflection;
using System.Text.RegularExpressions;
using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Bench.SgemmLadder;
using ManagedTensor.Gpu.Gemm;
using ManagedTensor.Gpu.Sass;
using Xunit;
using Xunit.Abstractions;

namespace ManagedTensor.Tests.Gpu.Gemm;

/// <summary>
/// Every GEMM kernel compiles to PTX for sm_89 and sm_90 without local memory in the kernel itself; with ptxas, the fast
/// ones (versions 3 and 5, the tensor-core kernel in every layout and copy path) assemble with no stack frame or spills.
/// Compiled and assembled texts are shared with PtxKernelTests and the kernel report (PtxCompiler.CompileCached,
/// CudaTools.AssembleCached), so each kernel costs its compile once per test run.
/// </summary>
public class GemmPtxTests(ITestOutputHelper output)
{
    /// <summary>The backend's GEMM kernels, and the teaching ladder's versions 1, 2 and 4 (one layout each).</summary>
    public static IEnumerable<(string Name, MethodInfo Kernel)> Kernels() =>
        GemmSelect.Specs().Select(s => (s.Name, s.Method)).Concat(
        [
            ("sgemm1", Method(typeof(Sgemm1Naive))),
            ("sgemm2", Method(typeof(Sgemm2SharedTiles))),
            ("sgemm4_NT", Method(typeof(Sgemm4Vectorized), typeof(KInner), typeof(KInner))),
        ]);

    private static MethodInfo Method(Type host, params Type[] generic)
    {
        var m = host.GetMethod("Kernel", BindingFlags.NonPublic | BindingFlags.Static)!;
        return generic.Length == 0 ? m : m.MakeGenericMethod(generic);
    }

    [Fact]
    public void EveryKernelCompilesForCiTargetsWithoutLocalMemory()
    {
        foreach (var arch in PtxCompiler.CiTargets)
        {
            foreach (var (kernel, ptx, error) in PtxCompiler.CompileAll(Kernels().Select(k => k.Kernel), arch))
            {
                Assert.True(ptx is not null, $"{PtxCompiler.Describe(kernel)}: {error}");
                Assert.Contains(".entry", ptx);
                Assert.DoesNotContain(".local", ptx.Split(".entry")[1]); // the kernel itself keeps everything in registers
            }
        }
    }

    [PtxasFact]
    public void FastKernelsAssembleWithoutStackOrSpills()
    {
        var fast = GemmSelect.Specs().Where(s => s.Name.StartsWith("sgemm5") || s.Name.StartsWith("hgemm")).ToList();
        foreach (var arch in PtxCompiler.CiTargets)
        {
            foreach (var spec in fast)
            {
                var (cubin, log) = CudaTools.AssembleCached(PtxCompiler.CompileCached(spec.Method, arch), arch);
                Assert.True(cubin is not null, $"{spec.Name} {CudaTools.Target(arch)}: {log}");
                var summary = Summary(log);
                output.WriteLine($"{spec.Name} {CudaTools.Target(arch)}: {summary}");
                Assert.Matches("0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads", summary);
            }
        }
    }

    /// <summary>"N registers, S bytes smem, F bytes stack frame, ..." of the entry function.</summary>
    internal static string Summary(string log)
    {
        var frame = Regex.Matches(log, @"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads").LastOrDefault()?.Value ?? "?";
        var regs = Regex.Matches(log, @"Used (\d+) registers").LastOrDefault()?.Groups[1].Value ?? "?";
        var smem = Regex.Matches(log, @"(\d+) bytes smem").LastOrDefault()?.Groups[1].Value ?? "0";
        return $"{regs} registers, {smem} bytes smem, {frame}";
    }
}
