using System.Numerics;
using ILGPU;

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
/// sync points is what keeps the CI tests fast; the row kernels run one-thread groups there, see GpuBackend.RowGroups).
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
        if (Group.DimX == 1) return v; // a one-thread group (GpuBackend.RowGroups on the CPU accelerator) has nothing to combine
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
