using System.Collections.Concurrent;
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu;

/// <summary>
/// A kernel the backend can launch: a closed static kernel method (explicitly grouped: it reads
/// Grid/Group itself) and its cache name, <c>{op}_{dtype}</c> with a suffix where an op has variants.
/// Every family of kernels lists all of its specs (for the offline PTX test) from the same functions
/// its launchers use.
/// </summary>
public sealed record KernelSpec(string Name, MethodInfo Method)
{
    public override string ToString() => Name;
}

/// <summary>Kernels compiled on first use and kept per accelerator (compiling costs 10-100 ms; launching, microseconds).</summary>
internal sealed class KernelCache(Accelerator accelerator)
{
    private readonly ConcurrentDictionary<string, Lazy<Kernel>> _kernels = new();

    public int Count => _kernels.Count;

    public Kernel Get(KernelSpec spec) =>
        _kernels.GetOrAdd(spec.Name, _ => new Lazy<Kernel>(() => Load(spec))).Value;

    private Kernel Load(KernelSpec spec)
    {
        try
        {
            return accelerator.LoadKernel(spec.Method);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"kernel {spec.Name} ({PtxCompiler.Describe(spec.Method)}) failed to compile for {accelerator.Name}: {e.Message}", e);
        }
    }
}
