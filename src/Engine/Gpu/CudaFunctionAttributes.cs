using System.Runtime.InteropServices;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu;

/// <summary>
/// Lifts CUDA's 48 KB default limit on a kernel's dynamic shared memory. A launch asking for more fails
/// (CUDA_ERROR_INVALID_VALUE) unless the kernel's function was opted in with
/// <c>cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes)</c>, which ILGPU 1.5.3
/// never calls (it passes the requested size straight to cuLaunchKernel and checks nothing). ILGPU's
/// <see cref="CudaKernel.FunctionPtr"/> is the CUfunction handle, so the attribute is set here through the
/// driver API, once per loaded kernel (<see cref="KernelCache"/> does it for specs that ask for more than
/// 48 KB). Limits: 99 KB per block on Ada (sm_89), 227 KB on Hopper (sm_90), minus the kernel's static
/// shared memory.
///
/// Safety: on other accelerators (the CPU one: no limit) this does nothing; on CUDA a failure names the
/// kernel, the size and the driver's error instead of a later, anonymous launch failure. It can only be
/// exercised on a GPU: scripts/gpu_checks.sh's selftest runs the kernels that need it.
/// </summary>
internal static class CudaFunctionAttributes
{
    /// <summary>Dynamic shared memory a kernel may use without opting in.</summary>
    public const int DefaultDynamicSharedLimit = 48 * 1024;

    private const int MaxDynamicSharedSizeBytes = 8;   // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    private const int PreferredSharedCarveout = 9;     // CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT (percent of L1)

    // "cuda" resolves to libcuda.so.1 through GpuDevices.InstallCudaResolver, as ILGPU's own imports do.
    [DllImport("cuda", EntryPoint = "cuFuncSetAttribute")]
    private static extern int FuncSetAttribute(IntPtr function, int attribute, int value);

    /// <summary>Lets <paramref name="kernel"/> launch with up to <paramref name="bytes"/> of dynamic shared memory.</summary>
    public static void AllowDynamicSharedMemory(Accelerator accelerator, Kernel kernel, int bytes, string name)
    {
        if (kernel is not CudaKernel cuda) return;
        accelerator.Bind(); // driver calls act on the thread's current context
        int error = FuncSetAttribute(cuda.FunctionPtr, MaxDynamicSharedSizeBytes, bytes);
        if (error != 0)
            throw new InvalidOperationException($"kernel {name}: cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, {bytes}) failed with CUDA error {error} " +
                $"(the device allows {accelerator.MaxSharedMemoryPerGroup} bytes per block by default; Ada opts in to 99 KB, Hopper to 227 KB)");
        // Prefer the largest shared-memory carveout so that several such blocks fit on an SM; a hint, its failure is harmless.
        FuncSetAttribute(cuda.FunctionPtr, PreferredSharedCarveout, 100);
    }
}
