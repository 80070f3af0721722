using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Sass;
using Xunit;

namespace ManagedTensor.Tests.Gpu;

/// <summary>
/// Every kernel the GPU backend can launch (each family's spec list, built from the same functions its
/// launchers use) compiles to PTX for sm_89 and sm_90 without a GPU, and each PTX has its entry point.
/// </summary>
public class PtxKernelTests
{
    public static TheoryData<string> Architectures() => new() { "sm_89", "sm_90" };

    [Theory]
    [MemberData(nameof(Architectures))]
    public void EveryKernelCompiles(string target)
    {
        var arch = target == "sm_89" ? PtxCompiler.Sm89 : PtxCompiler.Sm90;
        var specs = DistinctSpecs().ToList();
        var results = PtxCompiler.CompileAll(specs.Select(s => s.Method), arch);
        var failures = new List<string>();
        for (int i = 0; i < specs.Count; i++)
        {
            if (results[i].Error is { } error) failures.Add($"{specs[i].Name}: {error}");
            else if (!results[i].Ptx!.Contains(".entry")) failures.Add($"{specs[i].Name}: no .entry in the PTX");
        }
        int count = specs.Count;
        Assert.True(failures.Count == 0, $"{failures.Count} of {count} kernels failed for {target}:\n" + string.Join("\n", failures));
        Assert.True(count > 250, $"only {count} kernels listed");
    }

    /// <summary>Specs whose names differ but share a method (F16 and BF16 where only the bits move) compile once.</summary>
    private static IEnumerable<KernelSpec> DistinctSpecs() => GpuBackend.AllKernelSpecs().DistinctBy(s => s.Method);

    [Fact]
    public void SpecNamesAreUniquePerMethod()
    {
        var byName = GpuBackend.AllKernelSpecs().GroupBy(s => s.Name);
        foreach (var g in byName)
            Assert.True(g.Select(s => s.Method).Distinct().Count() == 1, $"kernel name {g.Key} is used for different methods");
    }

    /// <summary>ptxas (when installed) accepts every kernel's PTX for both targets; assembled in parallel, one process per kernel and target.</summary>
    [PtxasFact]
    public void PtxasAssemblesEveryKernel()
    {
        var specs = DistinctSpecs().ToList();
        var jobs = PtxCompiler.CiTargets
            .SelectMany(arch => PtxCompiler.CompileAll(specs.Select(s => s.Method), arch).Select((r, i) => (Spec: specs[i], Arch: arch, r.Ptx, r.Error)))
            .ToList(); // CompileAll fills PtxCompiler's cache, which the other PTX tests and the kernel report read
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.ForEach(jobs, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, job =>
        {
            if (job.Ptx is null)
            {
                failures.Add($"{job.Spec.Name}: {job.Error}");
                return;
            }
            var (cubin, log) = CudaTools.AssembleCached(job.Ptx, job.Arch);
            if (cubin is null) failures.Add($"{job.Spec.Name} sm_{job.Arch.Major}{job.Arch.Minor}: {log}");
        });
        Assert.True(failures.IsEmpty, string.Join("\n", failures));
    }
}
