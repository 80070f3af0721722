using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Sass;
using Xunit;

namespace ManagedTensor.Tests.Gpu;

/// <summary>
/// One ILGPU CPU accelerator for a test class (<c>IClassFixture&lt;GpuFixture&gt;</c>): it simulates an
/// NVIDIA device (warps of 32, groups up to 1024 threads) so warp and shared-memory kernels run in CI.
/// Each simulated thread is an OS thread: keep sizes small and read Grid/Group intrinsics into locals.
/// Creating a context costs 0.1-0.2 s, hence one per class rather than one per test.
/// Uses the same context options as the runtime backend (<see cref="GpuContextOptions"/>) plus
/// assertions, so Debug.Assert in kernels and out-of-bounds view accesses throw.
/// </summary>
public sealed class GpuFixture : IDisposable
{
    public GpuFixture()
    {
        Context = Context.Create(b => GpuContextOptions.Apply(b.CPU(CPUDeviceKind.Nvidia).Assertions()));
        Accelerator = Context.CreateCPUAccelerator(0);
    }

    public Context Context { get; }

    public CPUAccelerator Accelerator { get; }

    /// <summary>A device buffer holding a copy of <paramref name="data"/> (dispose it, or let the fixture's context free it).</summary>
    public MemoryBuffer1D<T, Stride1D.Dense> Upload<T>(T[] data) where T : unmanaged => Accelerator.Allocate1D(data);

    /// <summary>A zero-filled device buffer of <paramref name="length"/> elements.</summary>
    public MemoryBuffer1D<T, Stride1D.Dense> Zeros<T>(long length) where T : unmanaged
    {
        var buffer = Accelerator.Allocate1D<T>(length);
        buffer.MemSetToZero();
        Accelerator.Synchronize();
        return buffer;
    }

    /// <summary>Waits for every launched kernel and returns the buffer's contents.</summary>
    public T[] Download<T>(MemoryBuffer1D<T, Stride1D.Dense> buffer) where T : unmanaged
    {
        Accelerator.Synchronize();
        return buffer.GetAsArray1D();
    }

    public void Dispose()
    {
        Accelerator.Dispose();
        Context.Dispose();
    }
}

/// <summary>A fact that runs only when ptxas is installed (<see cref="CudaTools.Ptxas"/>); otherwise it is reported as skipped.</summary>
public sealed class PtxasFactAttribute : FactAttribute
{
    public PtxasFactAttribute()
    {
        if (CudaTools.Ptxas is null) Skip = "ptxas not found (run scripts/cuda_tools.sh, or set MT_PTXAS)";
    }
}

/// <summary>A theory that runs only when ptxas is installed; otherwise it is reported as skipped.</summary>
public sealed class PtxasTheoryAttribute : TheoryAttribute
{
    public PtxasTheoryAttribute()
    {
        if (CudaTools.Ptxas is null) Skip = "ptxas not found (run scripts/cuda_tools.sh, or set MT_PTXAS)";
    }
}

/// <summary>A theory that runs only when ptxas and cuobjdump are installed (the SASS tests); otherwise reported as skipped.</summary>
public sealed class CudaToolsTheoryAttribute : TheoryAttribute
{
    public CudaToolsTheoryAttribute()
    {
        if (CudaTools.Ptxas is null || CudaTools.Cuobjdump is null) Skip = "ptxas/cuobjdump not found (run scripts/cuda_tools.sh, or set MT_CUDA_TOOLS)";
    }
}
