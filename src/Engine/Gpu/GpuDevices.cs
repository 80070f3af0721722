using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu;

/// <summary>What selftest and error messages say about a device.</summary>
public sealed record DeviceInfo(Device Device, string Name, long MemoryBytes, string? ComputeCapability,
    int Multiprocessors, int WarpSize, int MaxGroupSize, string Details)
{
    public override string ToString() =>
        $"{Device}: {Name}, {(MemoryBytes >= 1L << 50 ? "host memory" : GpuAllocator.Format(MemoryBytes))}{(ComputeCapability is null ? "" : $", compute capability {ComputeCapability}")}, {Multiprocessors} SMs, warp {WarpSize}, groups up to {MaxGroupSize} ({Details})";
}

/// <summary>
/// Finding and opening ILGPU devices, with an explicit choice and no silent fallback: `cuda[:N]` is the
/// N-th CUDA device or a clear error; `ilgpu-cpu` is ILGPU's CPU accelerator (kernels simulated with
/// OS threads, for tests). OpenCL devices are never used.
/// </summary>
public static class GpuDevices
{
    /// <summary>
    /// The CPU accelerator's shape: warps of 32 (as NVIDIA, so shuffles and warp reductions behave the same)
    /// and 2 warps per group. Each simulated thread is an OS thread and a launch wakes all of them: with
    /// ILGPU's NVIDIA preset (32 warps, 1024 threads) a tiny launch costs ~200 ms, with 64 threads ~3 ms.
    /// Kernels size their groups from the accelerator (<see cref="GpuBackend.GroupSize"/>), never a constant.
    /// </summary>
    public static readonly CPUDevice CpuAcceleratorShape = new(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: 2, numMultiprocessors: 1);

    private static int _resolverInstalled;

    /// <summary>
    /// ILGPU binds the driver as DllImport("cuda") and probes cuda, libcuda, libcuda.so, but never
    /// libcuda.so.1, which is often the only name a GPU host has (the .so symlink comes with the dev package).
    /// </summary>
    public static void InstallCudaResolver()
    {
        if (Interlocked.Exchange(ref _resolverInstalled, 1) == 1) return;
        AssemblyLoadContext.Default.ResolvingUnmanagedDll += (Assembly _, string name) =>
            name == "cuda" && OperatingSystem.IsLinux() && NativeLibrary.TryLoad("libcuda.so.1", out var handle) ? handle : IntPtr.Zero;
    }

    /// <summary>Whether the CUDA driver library can be loaded at all (a host without NVIDIA's driver cannot).</summary>
    public static bool CudaDriverPresent()
    {
        foreach (var name in OperatingSystem.IsWindows() ? ["nvcuda.dll"] : new[] { "libcuda.so.1", "libcuda.so" })
            if (NativeLibrary.TryLoad(name, out var h))
            {
                NativeLibrary.Free(h);
                return true;
            }
        return false;
    }

    /// <summary>A context that sees CUDA devices only (no CPU or OpenCL device can be picked from it).</summary>
    internal static Context CreateCudaContext()
    {
        InstallCudaResolver();
        return Context.Create(b => GpuContextOptions.Apply(b.Cuda()));
    }

    /// <summary>A context with the CPU accelerator shaped as <see cref="CpuAcceleratorShape"/>, assertions on (out-of-bounds view accesses throw).</summary>
    internal static Context CreateCpuContext() => Context.Create(b => GpuContextOptions.Apply(b.CPU(CpuAcceleratorShape).Assertions()));

    /// <summary>The CUDA devices of this host, or the reason there are none.</summary>
    public static (IReadOnlyList<DeviceInfo> Devices, string? Problem) ListCuda()
    {
        try
        {
            using var context = CreateCudaContext();
            var devices = context.GetCudaDevices();
            var list = new List<DeviceInfo>();
            for (int i = 0; i < devices.Count; i++) list.Add(Describe(Device.Cuda(i), devices[i]));
            return (list, list.Count == 0 ? NoCudaReason() : null);
        }
        catch (Exception e)
        {
            return ([], $"CUDA initialization failed: {e.Message}");
        }
    }

    private static string NoCudaReason() => CudaDriverPresent()
        ? "the CUDA driver is loaded but reports no device (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
        : "driver not found (libcuda.so.1 could not be loaded: is the NVIDIA driver installed?)";

    internal static DeviceInfo Describe(Device device, ILGPU.Runtime.Device d)
    {
        string? cc = d is CudaDevice cuda && cuda.Architecture is { } arch ? $"{arch.Major}.{arch.Minor}" : null;
        string details = d is CudaDevice c2 ? $"driver {c2.DriverVersion}" : d is CPUDevice cpu ? $"ILGPU CPU accelerator, {cpu.NumThreads} simulated threads" : d.AcceleratorType.ToString();
        return new DeviceInfo(device, d.Name, d.MemorySize, cc, d.NumMultiprocessors, d.WarpSize, d.MaxNumThreadsPerGroup, details);
    }

    /// <summary>Opens <paramref name="device"/>: a new context and accelerator. Throws with the reason when it does not exist.</summary>
    internal static (Context Context, Accelerator Accelerator) Open(Device device)
    {
        switch (device.Kind)
        {
            case DeviceKind.IlgpuCpu:
                {
                    var context = CreateCpuContext();
                    var cpu = (CPUDevice)context.Devices.First(d => d.AcceleratorType == AcceleratorType.CPU);
                    return (context, cpu.CreateCPUAccelerator(context, CPUAcceleratorMode.Parallel));
                }
            case DeviceKind.Cuda:
                {
                    Context context;
                    try
                    {
                        context = CreateCudaContext();
                    }
                    catch (Exception e)
                    {
                        throw new UserErrorException($"no CUDA device {device}: CUDA initialization failed: {e.Message}", e);
                    }
                    var devices = context.GetCudaDevices();
                    if (devices.Count == 0)
                    {
                        context.Dispose();
                        throw new UserErrorException($"no CUDA device: {NoCudaReason()}");
                    }
                    if (device.Index >= devices.Count)
                    {
                        context.Dispose();
                        throw new UserErrorException($"no CUDA device {device.Index}: this host has {devices.Count} (cuda:0 .. cuda:{devices.Count - 1})");
                    }
                    try
                    {
                        return (context, devices[device.Index].CreateCudaAccelerator(context));
                    }
                    catch (Exception e)
                    {
                        context.Dispose();
                        throw new UserErrorException($"CUDA device {device} ({devices[device.Index].Name}) could not be opened: {e.Message}", e);
                    }
                }
            default:
                throw new ArgumentException($"device {device} is not a GPU device", nameof(device));
        }
    }
}
