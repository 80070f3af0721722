using ILGPU;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>
/// How a kernel reports a bad index: the first report wins (code = op + 1, the value, the size it had
/// to be below) in the backend's status buffer; the host throws at the next synchronization
/// (<see cref="GpuBackend.CheckKernelStatus"/>). The offending element is skipped.
/// </summary>
internal static class KernelStatus
{
    public static void Report(ArrayView<int> status, Op op, long value, int limit)
    {
        if (Atomic.CompareExchange(ref status[0], 0, (int)op + 1) == 0) // (target, compare, value)
        {
            status[1] = (int)value;
            status[2] = limit;
        }
    }
}
