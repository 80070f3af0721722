using System.Reflection;
using System.Text.RegularExpressions;
using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Sass;
using ManagedTensor.Gpu.Gemm;
using Xunit;
using Xunit.Abstractions;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Tests.Gpu.Gemm;

/// <summary>Every GEMM kernel compiles to PTX for sm_89 and sm_90; with ptxas, it assembles, and the fast ones use no local memory.</summary>
public class GemmPtxTests(ITestOutputHelper output)
{
    /// <summary>(kernel, must it run without a stack frame or spills).</summary>
    /// <summary>
    /// (kernel, must it run without a stack frame or spills). The production kernels (versions 3 and 5, the
    /// tensor-core one) in every layout pair; the teaching versions in one (each compile costs ~1 s in CI).
    /// </summary>
    public static IEnumerable<(MethodInfo Kernel, bool NoLocalMemory)> Kernels()
    {
        yield return (Method(typeof(Sgemm1Naive)), false);
        yield return (Method(typeof(Sgemm2SharedTiles)), false);
        yield return (Method(typeof(Sgemm4Vectorized), typeof(KInner), typeof(KInner)), false);
        foreach (var (a, b) in LayoutPairs())
        {
            yield return (Method(typeof(Sgemm3RegisterBlocked), a, b), false);
            yield return (Method(typeof(Sgemm5WarpTiled), a, b), true);
            yield return (Method(typeof(HgemmMma), typeof(BF16AsFloat), a, b), true);
        }
        yield return (Method(typeof(HgemmMma), typeof(F16AsFloat), typeof(KInner), typeof(KInner)), true);
    }

    public static IEnumerable<(Type, Type)> LayoutPairs() =>
        [(typeof(KInner), typeof(MnInner)), (typeof(KInner), typeof(KInner)), (typeof(MnInner), typeof(MnInner)), (typeof(MnInner), typeof(KInner))];

    private static MethodInfo Method(Type host, params Type[] generic)
    {
        var m = host.GetMethod("Kernel", BindingFlags.NonPublic | BindingFlags.Static)!;
        return generic.Length == 0 ? m : m.MakeGenericMethod(generic);
    }

    [Fact]
    public void EveryKernelCompilesForCiTargets()
    {
        var kernels = Kernels().ToList();
        foreach (var arch in PtxCompiler.CiTargets)
        {
            foreach (var (kernel, ptx, error) in PtxCompiler.CompileAll(kernels.Select(k => k.Kernel), arch))
            {
                Assert.True(ptx is not null, $"{PtxCompiler.Describe(kernel)}: {error}");
                Assert.Contains(".entry", ptx);
                Assert.DoesNotContain(".local", ptx.Split(".entry")[1]); // the kernel itself keeps everything in registers
            }
        }
    }

    [PtxasFact]
    public void EveryKernelAssemblesWithPtxas()
    {
        var kernels = Kernels().ToList();
        foreach (var arch in PtxCompiler.CiTargets)
        {
            var compiled = PtxCompiler.CompileAll(kernels.Select(k => k.Kernel), arch);
            for (int i = 0; i < kernels.Count; i++)
            {
                var (kernel, ptx, error) = compiled[i];
                Assert.True(ptx is not null, $"{PtxCompiler.Describe(kernel)}: {error}");
                var (ok, log) = CudaTools.Assemble(ptx, arch);
                Assert.True(ok, $"{PtxCompiler.Describe(kernel)} sm_{arch.Major}{arch.Minor}: {log}");
                var summary = Summary(log);
                output.WriteLine($"{PtxCompiler.Describe(kernel)} sm_{arch.Major}{arch.Minor}: {summary}");
                if (kernels[i].NoLocalMemory) Assert.Matches("0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads", summary);
            }
        }
    }

    /// <summary>"N registers, S bytes stack frame, ..." of the entry function.</summary>
    internal static string Summary(string log)
    {
        var frame = Regex.Matches(log, @"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads").LastOrDefault()?.Value ?? "?";
        var regs = Regex.Matches(log, @"Used (\d+) registers").LastOrDefault()?.Groups[1].Value ?? "?";
        var smem = Regex.Matches(log, @"(\d+) bytes smem").LastOrDefault()?.Groups[1].Value ?? "0";
        return $"{regs} registers, {smem} bytes smem, {frame}";
    }
}
