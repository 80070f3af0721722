using System.Numerics;
using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>An associative combine for group reductions.</summary>
internal interface IReduce<T> where T : unmanaged
{
    T Combine(T a, T b);
}

internal readonly struct SumReduce<T> : IReduce<T> where T : unmanaged, INumber<T>
{
    public T Combine(T a, T b) => a + b;
}

/// <summary>max, NaN propagating (torch.max).</summary>
internal readonly struct MaxReduce<T> : IReduce<T> where T : unmanaged, INumber<T>
{
    public T Combine(T a, T b) => T.IsNaN(a) ? a : T.IsNaN(b) ? b : a > b ? a : b;
}

/// <summary>min, NaN propagating (torch.min).</summary>
internal readonly struct MinReduce<T> : IReduce<T> where T : unmanaged, INumber<T>
{
    public T Combine(T a, T b) => T.IsNaN(a) ? a : T.IsNaN(b) ? b : a < b ? a : b;
}

/// <summary>
/// Reductions across one group (all of its threads must call, with the same op): butterfly shuffles
/// within each warp (every lane ends with the warp's result), one partial per warp in shared memory,
/// then every thread combines the few partials in warp order, so every thread returns the same result.
/// Two barriers per call (on the CPU accelerator every barrier and shuffle wakes OS threads, so fewer
/// sync points is what keeps the CI tests fast; there the shuffles are replaced too, see <see cref="ByLanes"/>).
/// Group sizes are multiples of the warp size (the backend launches 64 or 256 threads).
/// </summary>
internal static class GroupReduce
{
    private const int MaxWarps = 32;

    public static T Warp<T, TOp>(T v, TOp op) where T : unmanaged where TOp : struct, IReduce<T>
    {
        for (int mask = ILGPU.Warp.WarpSize / 2; mask > 0; mask /= 2)
            v = op.Combine(v, ILGPU.Warp.ShuffleXor(v, mask));
        return v;
    }

    /// <summary>The op over every thread's <paramref name="v"/>, returned to every thread.</summary>
    public static T All<T, TOp>(T v, TOp op) where T : unmanaged where TOp : struct, IReduce<T>
    {
        var partials = SharedMemory.Allocate<T>(MaxWarps);
        int warps = Group.DimX / ILGPU.Warp.WarpSize;
        if (Accelerator.CurrentType == AcceleratorType.CPU) return ByLanes(v, op, partials); // a constant: the CUDA kernel has no such branch
        v = Warp(v, op);
        if (ILGPU.Warp.LaneIdx == 0) partials[ILGPU.Warp.WarpIdx] = v;
        Group.Barrier();
        // A handful of partials (8 warps of a 256-thread group): every thread combines them in the same order.
        T r = partials[0];
        for (int w = 1; w < warps; w++) r = op.Combine(r, partials[w]);
        Group.Barrier(); // the partials may be rewritten by the next call at this site
        return r;
    }

    /// <summary>
    /// The first index of the maximum over the group's (value, index) pairs; a NaN counts as larger than
    /// anything, and among equal values (or NaNs) the smaller index wins, as torch.argmax.
    /// </summary>
    /// <summary>
    /// <see cref="All"/> on ILGPU's CPU accelerator, without shuffles: there a shuffle is four barriers of the warp's 32
    /// OS threads and a butterfly five shuffles, so one reduction was 20 warp barriers and 2 group barriers (about 14 ms
    /// a row of RMSNorm on the loaded 2-core machine). Here warp w folds its lanes into partials[lane] in turn (one
    /// group barrier per warp), then every thread folds the lane partials: warps + 1 group barriers, the same order
    /// of combines on every thread and every run. A one-thread group (<see cref="GpuBackend.RowGroups"/>) has nothing
    /// to combine and no barrier to wait at.
    /// </summary>
    private static T ByLanes<T, TOp>(T v, TOp op, ArrayView<T> partials) where T : unmanaged where TOp : struct, IReduce<T>
    {
        int threads = Group.DimX, size = ILGPU.Warp.WarpSize;
        if (threads == 1) return v;
        int lane = ILGPU.Warp.LaneIdx, warp = ILGPU.Warp.WarpIdx;
        int lanes = threads < size ? threads : size, warps = (threads + size - 1) / size;
        for (int w = 0; w < warps; w++)
        {
            if (warp == w) partials[lane] = w == 0 ? v : op.Combine(partials[lane], v);
            Group.Barrier();
        }
        T r = partials[0];
        for (int l = 1; l < lanes; l++) r = op.Combine(r, partials[l]);
        Group.Barrier(); // the partials may be rewritten by the next call at this site
        return r;
    }

    public static int ArgMax(double value, int index)
    {
        var values = SharedMemory.Allocate<double>(MaxWarps);
        var indices = SharedMemory.Allocate<int>(MaxWarps);
        int warps = Group.DimX / ILGPU.Warp.WarpSize;
        WarpArgMax(ref value, ref index);
        if (ILGPU.Warp.LaneIdx == 0)
        {
            values[ILGPU.Warp.WarpIdx] = value;
            indices[ILGPU.Warp.WarpIdx] = index;
        }
        Group.Barrier();
        double best = values[0];
        int bestIndex = indices[0];
        for (int w = 1; w < warps; w++)
        {
            if (Better(values[w], indices[w], best, bestIndex))
            {
                best = values[w];
                bestIndex = indices[w];
            }
        }
        Group.Barrier();
        return bestIndex;
    }

    private static void WarpArgMax(ref double value, ref int index)
    {
        for (int mask = ILGPU.Warp.WarpSize / 2; mask > 0; mask /= 2)
        {
            double v = ILGPU.Warp.ShuffleXor(value, mask);
            int i = ILGPU.Warp.ShuffleXor(index, mask);
            if (Better(v, i, value, index))
            {
                value = v;
                index = i;
            }
        }
    }

    /// <summary>Whether (v, i) beats (best, bestIndex) for argmax.</summary>
    public static bool Better(double v, int i, double best, int bestIndex)
    {
        bool vNaN = double.IsNaN(v), bestNaN = double.IsNaN(best);
        if (vNaN || bestNaN) return vNaN && (!bestNaN || i < bestIndex);
        return v > best || (v == best && i < bestIndex);
    }
}
