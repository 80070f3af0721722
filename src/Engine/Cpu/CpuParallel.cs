using System.Runtime.CompilerServices;

namespace ManagedTensor.Cpu;

/// <summary>Splits [0, count) into parallel pieces when the total work is large.</summary>
internal static class CpuParallel
{
    /// <summary>
    /// Whether this process may run on more than one core. On one (taskset -c 0, a one-CPU container)
    /// a Parallel.For only hands pieces to pool threads that then take turns with the caller on the
    /// same core: every loop below runs its pieces on the calling thread instead, in the same order.
    /// </summary>
    public static bool Enabled => Environment.ProcessorCount > 1;

    /// <summary>
    /// Calls <paramref name="body"/>(start, end) over pieces of [0, count). <paramref name="workPerItem"/>
    /// (elements touched per item) decides whether threads are worth starting.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void For(int count, long workPerItem, Action<int, int> body)
    {
        long work = count * Math.Max(workPerItem, 1);
        int pieces = work < StridedLoop.ParallelThreshold || !Enabled ? 1 : (int)Math.Min(Math.Min(Environment.ProcessorCount * 4L, work / (16 * 1024)), count);
        if (pieces <= 1)
        {
            if (count > 0) body(0, count);
            return;
        }
        Parallel.For(0, pieces, p => body((int)((long)count * p / pieces), (int)((long)count * (p + 1) / pieces)));
    }
}
