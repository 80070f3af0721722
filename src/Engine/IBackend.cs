namespace ManagedTensor;

/// <summary>
/// The narrow interface every backend implements. The front end (Tensor's op methods) validates
/// arguments, computes output shapes, broadcasts inputs to views of the output's shape, allocates
/// outputs and then calls <see cref="Execute"/>. Backends know nothing of gradients.
/// An op or dtype a backend does not support throws <see cref="NotSupportedException"/> naming both;
/// the generic front end (<see cref="Tensor.Apply"/>) asks <see cref="Kernels"/> first and runs the op's
/// composite fallback where there is no kernel.
/// </summary>
public interface IBackend
{
    Device Device { get; }

    /// <summary>The kernels this backend has, by op (what <see cref="Execute"/> runs).</summary>
    KernelTable Kernels { get; }

    /// <summary>A new storage of <paramref name="length"/> elements. Zero-filled when <paramref name="zero"/>, else unspecified.</summary>
    Storage Allocate(DType dtype, int length, bool zero);

    /// <summary>
    /// Runs <paramref name="op"/>: reads <paramref name="inputs"/>, writes <paramref name="outputs"/>
    /// (already allocated with their final shapes; the per-op contract is on <see cref="Op"/>).
    /// </summary>
    void Execute(Op op, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, OpAttrs? attrs);
}

/// <summary>Finds the backend for a device. GPU backends register themselves when first used.</summary>
public static class Backends
{
    private static readonly Dictionary<Device, IBackend> Registered = new();
    private static readonly object Gate = new();

    // Ops declared in src/Engine/Ops add their CPU kernels when the registry is built: build it before any backend is used.
    static Backends() => OpRegistry.EnsureBuilt();

    /// <summary>Makes backends for non-CPU devices: the ILGPU backend (src/Engine/Gpu) unless replaced.</summary>
    public static Func<Device, IBackend>? GpuFactory { get; set; } = Gpu.GpuBackend.Create;

    public static IBackend For(Device device)
    {
        lock (Gate)
        {
            if (Registered.TryGetValue(device, out var b)) return b;
            b = device.Kind == DeviceKind.Cpu
                ? Cpu.CpuBackend.Instance
                : (GpuFactory ?? throw new NotSupportedException($"device {device}: no GPU backend is loaded"))(device);
            Registered[device] = b;
            return b;
        }
    }

    public static void Register(IBackend backend)
    {
        lock (Gate) Registered[backend.Device] = backend;
    }
}
