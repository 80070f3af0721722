using System.Reflection;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu;

/// <summary>
/// Compiles an ILGPU kernel method to PTX text with no GPU and no CUDA driver (for CI tests and for
/// reading the code a kernel becomes). Each call uses a fresh <see cref="Context"/>: after one internal
/// compiler error, later compiles in the same context fail with unrelated exceptions.
/// About 0.1 s per kernel.
/// </summary>
/// <remarks>
/// ILGPU 1.5.3 caps the emitted <c>.target</c> at sm_80 (the newest architecture its capability table
/// needs), so sm_89 and sm_90 both get <c>.target sm_80</c>, which their drivers JIT natively; mma.sync,
/// ldmatrix and cp.async are sm_80 instructions. Pass <c>raiseTarget: true</c> to emit
/// <c>.target sm_89</c> / <c>sm_90</c> (needed for sm_90-only PTX such as wgmma or clusters); it sets
/// the capability context's internal TargetArchitecture by reflection.
/// </remarks>
public static class PtxCompiler
{
    public static readonly CudaArchitecture Sm89 = new(8, 9);
    public static readonly CudaArchitecture Sm90 = new(9, 0);

    /// <summary>The architectures every kernel is compiled for in CI (Ada and Hopper).</summary>
    public static IReadOnlyList<CudaArchitecture> CiTargets { get; } = [Sm89, Sm90];

    /// <summary>PTX ISA 7.8 (CUDA 11.8): what Debian's ptxas 11.8 assembles; every driver since 520 JITs it.</summary>
    public static readonly CudaInstructionSet DefaultIsa = new(7, 8);

    /// <summary>PTX ISA 8.0 (CUDA 12.0): the first with wgmma, TMA (cp.async.bulk.tensor) and sm_90a; ptxas 12.x assembles it.</summary>
    public static readonly CudaInstructionSet HopperIsa = new(8, 0);

    /// <summary>
    /// PTX for sm_90 made arch-specific: <c>.target sm_90a</c>, which wgmma.mma_async, setmaxnreg and the
    /// multicast TMA forms require. ILGPU 1.5.3 knows no "a" targets, so the compiled text is patched.
    /// </summary>
    public static string ToArchSpecific(string ptx) =>
        System.Text.RegularExpressions.Regex.Replace(ptx, @"^\.target sm_90\b", ".target sm_90a", System.Text.RegularExpressions.RegexOptions.Multiline);

    /// <summary>
    /// The PTX of <paramref name="kernel"/> (a static method; generic ones must be closed with
    /// MakeGenericMethod). A first parameter of an ILGPU index type (Index1D, ...) makes it an implicitly
    /// grouped kernel, otherwise it is explicitly grouped (Grid/Group intrinsics, LoadStreamKernel).
    /// </summary>
    /// <param name="configure">Context settings; null means <see cref="GpuContextOptions.Apply"/> (what the runtime uses).</param>
    /// <exception cref="InvalidOperationException">ILGPU cannot compile the kernel; the message names the kernel and carries ILGPU's reason.</exception>
    public static string Compile(MethodInfo kernel, CudaArchitecture arch, CudaInstructionSet? isa = null,
        bool raiseTarget = false, Func<Context.Builder, Context.Builder>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (!kernel.IsStatic) throw new ArgumentException($"kernel {kernel.Name} must be a static method", nameof(kernel));
        if (kernel.ContainsGenericParameters)
            throw new ArgumentException($"kernel {kernel.Name} is an open generic method: close it with MakeGenericMethod", nameof(kernel));
        kernel = CudaFormats.For(kernel, arch);
        using var context = Context.Create(b => (configure ?? GpuContextOptions.Apply)(b));
        var capabilities = new CudaCapabilityContext(arch);
        if (raiseTarget) RaiseTarget(capabilities, arch);
        using var backend = new PTXBackend(context, capabilities, arch, isa ?? DefaultIsa, nvvmAPI: null);
        var entry = IsImplicitlyGrouped(kernel)
            ? EntryPointDescription.FromImplicitlyGroupedKernel(kernel)
            : EntryPointDescription.FromExplicitlyGroupedKernel(kernel);
        try
        {
            var compiled = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
            return compiled.PTXAssembly;
        }
        catch (Exception e)
        {
            var reason = e.InnerException is null ? e.Message : $"{e.Message} ({e.InnerException.Message})";
            throw new InvalidOperationException($"PTX compilation of {Describe(kernel)} for {arch} failed: {reason}", e);
        }
    }

    /// <summary>
    /// The architecture ILGPU really generates code for: the <c>.target</c> it writes (its capability table's, capped at
    /// sm_80 in 1.5.3), or <paramref name="arch"/> itself when the target is raised. Every choice its PTX backend makes by
    /// architecture (intrinsics gated at sm_53 to sm_80) is settled at the cap, so sm_89 and sm_90 get one program that
    /// differs only in the numbers ILGPU gives labels and functions. The cache compiles it once for both (ptxas still
    /// assembles it for each); PtxCompilerTests.Ada_and_Hopper_get_the_same_program holds this against an ILGPU upgrade.
    /// </summary>
    public static string CodeTarget(CudaArchitecture arch, bool raiseTarget = false) =>
        raiseTarget ? arch.ToString() : new CudaCapabilityContext(arch).TargetArchitecture.ToString();

    /// <summary>Compiled PTX by (kernel, <see cref="CodeTarget"/>, ISA, raised target).</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(MethodInfo, string, string, bool), Lazy<string>> Cache = new();

    /// <summary>
    /// <see cref="Compile"/> with the runtime's context settings, memoized for the process: the PTX tests, the kernel
    /// report and its budget tests compile each large kernel once, and once for sm_89 and sm_90 together
    /// (<see cref="CodeTarget"/>; the tensor-core kernels take seconds each).
    /// </summary>
    public static string CompileCached(MethodInfo kernel, CudaArchitecture arch, CudaInstructionSet? isa = null, bool raiseTarget = false)
    {
        var key = (kernel, CodeTarget(arch, raiseTarget), (isa ?? DefaultIsa).ToString(), raiseTarget);
        return Cache.GetOrAdd(key, _ => new Lazy<string>(() => Compile(kernel, arch, isa, raiseTarget))).Value;
    }

    /// <summary>
    /// Compiles many kernels for one architecture, reusing a context while compiles succeed (context
    /// creation dominates the cost of small kernels) and starting a fresh one after any failure.
    /// Returns, per kernel in order, its PTX or the failure message.
    /// </summary>
    public static IReadOnlyList<(MethodInfo Kernel, string? Ptx, string? Error)> CompileAll(IEnumerable<MethodInfo> kernels, CudaArchitecture arch,
        CudaInstructionSet? isa = null, Func<Context.Builder, Context.Builder>? configure = null)
    {
        var results = new List<(MethodInfo, string?, string?)>();
        Context? context = null;
        PTXBackend? backend = null;
        try
        {
            foreach (var kernel in kernels)
            {
                // A kernel another caller compiled, or is compiling now (the PTX tests run in parallel): wait for its PTX
                // rather than compile it a second time (the tensor-core kernels take seconds each).
                if (configure is null && Cache.TryGetValue((kernel, CodeTarget(arch), (isa ?? DefaultIsa).ToString(), false), out var known))
                {
                    try { results.Add((kernel, known.Value, null)); }
                    catch (Exception e) { results.Add((kernel, null, e.Message)); }
                    continue;
                }
                if (context is null)
                {
                    context = Context.Create(b => (configure ?? GpuContextOptions.Apply)(b));
                    backend = new PTXBackend(context, new CudaCapabilityContext(arch), arch, isa ?? DefaultIsa, nvvmAPI: null);
                }
                try
                {
                    var cuda = CudaFormats.For(kernel, arch);
                    var entry = IsImplicitlyGrouped(cuda)
                        ? EntryPointDescription.FromImplicitlyGroupedKernel(cuda)
                        : EntryPointDescription.FromExplicitlyGroupedKernel(cuda);
                    string ptx = ((PTXCompiledKernel)backend!.Compile(entry, KernelSpecialization.Empty)).PTXAssembly;
                    if (configure is null) Cache.TryAdd((kernel, CodeTarget(arch), (isa ?? DefaultIsa).ToString(), false), new Lazy<string>(ptx));
                    results.Add((kernel, ptx, null));
                }
                catch (Exception e)
                {
                    results.Add((kernel, null, $"{Describe(kernel)}: {e.Message}{(e.InnerException is null ? "" : $" ({e.InnerException.Message})")}"));
                    backend!.Dispose();
                    context.Dispose();
                    (backend, context) = (null, null);
                }
            }
        }
        finally
        {
            backend?.Dispose();
            context?.Dispose();
        }
        return results;
    }

    /// <summary>
    /// A kernel compiled for sm_90a in <paramref name="context"/>, ready for <c>Accelerator.LoadKernel(CompiledKernel)</c>:
    /// ILGPU's runtime would emit <c>.target sm_80</c> (its capability table ends there), on which wgmma and TMA do not
    /// exist, so the PTX is made here with the target raised and patched (<see cref="ToArchSpecific"/>, ISA
    /// <see cref="HopperIsa"/>) and wrapped in a new PTXCompiledKernel (its constructor and entry point are internal:
    /// reflection, checked against ILGPU 1.5.3).
    /// </summary>
    public static CompiledKernel CompileSm90a(Context context, MethodInfo kernel)
    {
        var capabilities = new CudaCapabilityContext(Sm90);
        RaiseTarget(capabilities, Sm90);
        using var backend = new PTXBackend(context, capabilities, Sm90, HopperIsa, nvvmAPI: null);
        var compiled = (PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(CudaFormats.For(kernel, Sm90)), KernelSpecialization.Empty);
        var entryPoint = typeof(CompiledKernel).GetProperty("EntryPoint", BindingFlags.NonPublic | BindingFlags.Instance)?.GetValue(compiled)
            ?? throw new InvalidOperationException("ILGPU's CompiledKernel has no EntryPoint property (ILGPU version changed?)");
        var constructor = typeof(PTXCompiledKernel).GetConstructors(BindingFlags.NonPublic | BindingFlags.Instance).SingleOrDefault(c => c.GetParameters().Length == 4)
            ?? throw new InvalidOperationException("ILGPU's PTXCompiledKernel constructor changed");
        return (CompiledKernel)constructor.Invoke([context, entryPoint, compiled.Info, ToArchSpecific(compiled.PTXAssembly)]);
    }

    /// <summary>Whether the kernel's first parameter is an ILGPU index (an implicitly grouped kernel).</summary>
    public static bool IsImplicitlyGrouped(MethodInfo kernel)
    {
        var p = kernel.GetParameters();
        return p.Length > 0 && typeof(IIndex).IsAssignableFrom(p[0].ParameterType);
    }

    /// <summary>"Class.Method&lt;T1, T2&gt;" for messages.</summary>
    public static string Describe(MethodInfo kernel)
    {
        var name = $"{kernel.DeclaringType?.Name}.{kernel.Name}";
        return kernel.IsGenericMethod ? $"{name}<{string.Join(", ", kernel.GetGenericArguments().Select(t => t.Name))}>" : name;
    }

    private static void RaiseTarget(CudaCapabilityContext capabilities, CudaArchitecture arch)
    {
        var property = typeof(CudaCapabilityContext).GetProperty(nameof(CudaCapabilityContext.TargetArchitecture))
            ?? throw new InvalidOperationException("ILGPU's CudaCapabilityContext has no TargetArchitecture property (ILGPU version changed?)");
        var setter = property.GetSetMethod(nonPublic: true)
            ?? throw new InvalidOperationException("CudaCapabilityContext.TargetArchitecture has no setter (ILGPU version changed?)");
        setter.Invoke(capabilities, [arch]);
    }
}
