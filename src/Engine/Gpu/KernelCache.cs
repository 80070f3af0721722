using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu;

/// <summary>
/// A kernel the backend can launch: a closed static kernel method (explicitly grouped: it reads
/// Grid/Group itself) and its cache name, <c>{op}_{dtype}</c> with a suffix where an op has variants.
/// Every family of kernels lists all of its specs (for the offline PTX test) from the same functions
/// its launchers use. <paramref name="DynamicSharedBytes"/>: the dynamic shared memory a launch asks
/// for; above 48 KB the kernel is opted in once, when loaded (see <see cref="CudaFunctionAttributes"/>).
/// <paramref name="ArchSpecific"/>: Hopper-only code (wgmma, TMA): compiled for sm_90a by <see cref="PtxCompiler.CompileSm90a"/>.
/// </summary>
public sealed record KernelSpec(string Name, MethodInfo Method, int DynamicSharedBytes = 0, bool ArchSpecific = false)
{
    public override string ToString() => Name;
}

/// <summary>
/// The one kernel cache: kernels compiled on first use (10-100 ms; launching costs microseconds) and kept
/// per accelerator, keyed by their spec's name. Every launcher (the backend's op families, the GEMM
/// kernels, the attention kernels) goes through <see cref="For"/>, so a kernel is compiled once per
/// accelerator whoever launches it first. On CUDA a kernel's portable 16-bit formats become their cvt twins
/// (<see cref="CudaFormats"/>).
/// </summary>
internal sealed class KernelCache
{
    private static readonly ConditionalWeakTable<Accelerator, KernelCache> Caches = new();
    private readonly ConcurrentDictionary<string, Lazy<Kernel>> _kernels = new();
    private readonly Accelerator _accelerator;

    private KernelCache(Accelerator accelerator) => _accelerator = accelerator;

    /// <summary>The cache of <paramref name="accelerator"/>.</summary>
    public static KernelCache For(Accelerator accelerator) => Caches.GetValue(accelerator, a => new KernelCache(a));

    public int Count => _kernels.Count;

    public Kernel Get(KernelSpec spec) =>
        _kernels.GetOrAdd(spec.Name, _ => new Lazy<Kernel>(() => Load(spec))).Value;

    /// <summary>Launches <paramref name="spec"/> on the accelerator's default stream (the one stream all GPU work runs on).</summary>
    public void Launch(KernelSpec spec, KernelConfig config, params object[] args) =>
        Get(spec).Launch(_accelerator.DefaultStream, config, args);

    private Kernel Load(KernelSpec spec)
    {
        Kernel kernel;
        try
        {
            kernel = _accelerator switch
            {
                CudaAccelerator when spec.ArchSpecific => _accelerator.LoadKernel(PtxCompiler.CompileSm90a(_accelerator.Context, spec.Method)),
                CudaAccelerator { Architecture: { } arch } => _accelerator.LoadKernel(CudaFormats.For(spec.Method, arch)),
                _ => _accelerator.LoadKernel(spec.Method),
            };
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"kernel {spec.Name} ({PtxCompiler.Describe(spec.Method)}) failed to compile for {_accelerator.Name}: {e.Message}", e);
        }
        if (spec.DynamicSharedBytes > CudaFunctionAttributes.DefaultDynamicSharedLimit)
            CudaFunctionAttributes.AllowDynamicSharedMemory(_accelerator, kernel, spec.DynamicSharedBytes, spec.Name);
        return kernel;
    }
}
