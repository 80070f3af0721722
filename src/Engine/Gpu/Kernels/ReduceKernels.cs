using System.Reflection;
using ILGPU;
using ManagedTensor.Cpu;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>Axes of one tensor (sizes and element strides, up to 8), for kernels that walk a sub-space of it.</summary>
internal unsafe struct AxesLayout
{
    public const int MaxRank = 8;
    public int Rank;
    public fixed int Shape[MaxRank];
    public fixed int Strides[MaxRank];

    /// <summary>The axes (size, stride) in order, size-1 axes dropped and contiguous neighbours merged.</summary>
    public static AxesLayout Create(IEnumerable<(int Size, int Stride)> axes, string what)
    {
        var merged = new List<(int Size, int Stride)>();
        foreach (var a in axes.Reverse())
        {
            if (a.Size == 1) continue;
            if (merged.Count > 0 && a.Stride == merged[0].Stride * merged[0].Size) merged[0] = (merged[0].Size * a.Size, merged[0].Stride);
            else merged.Insert(0, a);
        }
        if (merged.Count > MaxRank) throw new NotSupportedException($"{what}: more than {MaxRank} non-mergeable axes");
        var l = new AxesLayout { Rank = merged.Count };
        for (int d = 0; d < merged.Count; d++)
        {
            l.Shape[d] = merged[d].Size;
            l.Strides[d] = merged[d].Stride;
        }
        return l;
    }

    /// <summary>Element offset of row-major index <paramref name="i"/> over these axes (0 for rank 0).</summary>
    public int Offset(int i)
    {
        if (Rank == 1) return i * Strides[0];
        int o = 0;
        for (int d = Rank - 1; d >= 0; d--)
        {
            int size = Shape[d];
            o += i % size * Strides[d];
            i /= size;
        }
        return o;
    }

    /// <summary>Stride of the innermost axis (1 when there is none).</summary>
    public int InnerStride => Rank == 0 ? 1 : Strides[Rank - 1];
}

/// <summary>
/// Sum, Mean, Max, Min, Var and ArgMax over any set of axes. A reduction is Outputs independent
/// reductions of Count elements: output o's elements sit at x.Offset + kept.Offset(o) + reduced.Offset(r).
/// Two shapes of work, picked per launch:
///   one group per output   when the reduced elements are contiguous (a row) or outputs are few:
///                          the group's threads stride through the row and combine with GroupReduce;
///   one thread per output  otherwise (reducing an outer axis, a bias gradient): neighbouring threads
///                          read neighbouring columns, so the loads coalesce.
/// Float sums accumulate in double and integer sums in long, as the CPU does; F16/BF16 results are
/// rounded through float as the CPU's F32 detour does. Deterministic: a fixed order for a given launch.
/// </summary>
internal static class ReduceKernels
{
    private const int KindSum = 0, KindMax = 1, KindMin = 2, KindVar = 3;

    // ---- kernels ----

    /// <summary>Float reductions (sum/mean, max, min, var) with double accumulators; y[o] = combine(...) * scale, or the deviation sum / divisor for var.</summary>
    public static void FloatKernel<T, C>(ArrayView<T> x, ArrayView<T> y, AxesLayout kept, AxesLayout reduced, int xOffset, int yOffset,
        int outputs, int count, int kind, double scale, int perGroup, int wide)
        where T : unmanaged where C : struct, ICodec<T>
    {
        C c = default;
        int tid = Group.IdxX, threads = Group.DimX, group = Grid.IdxX, groups = Grid.DimX;
        if (perGroup != 0)
        {
            for (int o = group; o < outputs; o += groups)
            {
                int b = xOffset + kept.Offset(o);
                double acc = kind == KindMax ? double.NegativeInfinity : kind == KindMin ? double.PositiveInfinity : 0;
                for (int r = tid; r < count; r += threads) acc = Combine(kind, acc, c.ToDouble(x[b + reduced.Offset(r)]));
                acc = kind == KindMax ? GroupReduce.All(acc, new MaxReduce<double>())
                    : kind == KindMin ? GroupReduce.All(acc, new MinReduce<double>())
                    : GroupReduce.All(acc, new SumReduce<double>());
                if (kind == KindVar)
                {
                    double mean = acc / count, dev = 0;
                    for (int r = tid; r < count; r += threads)
                    {
                        double d = c.ToDouble(x[b + reduced.Offset(r)]) - mean;
                        dev += d * d;
                    }
                    acc = GroupReduce.All(dev, new SumReduce<double>()) / scale;
                }
                else if (kind == KindSum) acc *= scale;
                if (tid == 0) y[yOffset + o] = wide != 0 ? c.FromDouble(acc) : c.FromFloat((float)acc);
            }
            return;
        }
        for (int o = group * threads + tid; o < outputs; o += groups * threads)
        {
            int b = xOffset + kept.Offset(o);
            double acc = kind == KindMax ? double.NegativeInfinity : kind == KindMin ? double.PositiveInfinity : 0;
            for (int r = 0; r < count; r++) acc = Combine(kind, acc, c.ToDouble(x[b + reduced.Offset(r)]));
            if (kind == KindVar)
            {
                double mean = acc / count, dev = 0;
                for (int r = 0; r < count; r++)
                {
                    double d = c.ToDouble(x[b + reduced.Offset(r)]) - mean;
                    dev += d * d;
                }
                acc = dev / scale;
            }
            else if (kind == KindSum) acc *= scale;
            y[yOffset + o] = wide != 0 ? c.FromDouble(acc) : c.FromFloat((float)acc);
        }
    }

    private static double Combine(int kind, double acc, double v) => kind switch
    {
        KindMax => double.IsNaN(acc) ? acc : double.IsNaN(v) || v > acc ? v : acc,
        KindMin => double.IsNaN(acc) ? acc : double.IsNaN(v) || v < acc ? v : acc,
        _ => acc + v,
    };

    /// <summary>Integer sum (wrapping to T, as the CPU), max and min, in long.</summary>
    public static void IntegerKernel<T, C>(ArrayView<T> x, ArrayView<T> y, AxesLayout kept, AxesLayout reduced, int xOffset, int yOffset,
        int outputs, int count, int kind, int perGroup)
        where T : unmanaged where C : struct, ICodec<T>
    {
        C c = default;
        int tid = Group.IdxX, threads = Group.DimX, group = Grid.IdxX, groups = Grid.DimX;
        if (perGroup != 0)
        {
            for (int o = group; o < outputs; o += groups)
            {
                int b = xOffset + kept.Offset(o);
                long acc = kind == KindMax ? long.MinValue : kind == KindMin ? long.MaxValue : 0;
                for (int r = tid; r < count; r += threads) acc = Combine(kind, acc, c.ToLong(x[b + reduced.Offset(r)]));
                acc = kind == KindMax ? GroupReduce.All(acc, new MaxReduce<long>())
                    : kind == KindMin ? GroupReduce.All(acc, new MinReduce<long>())
                    : GroupReduce.All(acc, new SumReduce<long>());
                if (tid == 0) y[yOffset + o] = c.FromLong(acc);
            }
            return;
        }
        for (int o = group * threads + tid; o < outputs; o += groups * threads)
        {
            int b = xOffset + kept.Offset(o);
            long acc = kind == KindMax ? long.MinValue : kind == KindMin ? long.MaxValue : 0;
            for (int r = 0; r < count; r++) acc = Combine(kind, acc, c.ToLong(x[b + reduced.Offset(r)]));
            y[yOffset + o] = c.FromLong(acc);
        }
    }

    private static long Combine(int kind, long acc, long v) => kind switch
    {
        KindMax => v > acc ? v : acc,
        KindMin => v < acc ? v : acc,
        _ => acc + v,
    };

    /// <summary>Index of the first maximum along one axis (a NaN beats everything; the first NaN wins).</summary>
    public static void ArgMaxKernel<T, C>(ArrayView<T> x, ArrayView<long> y, AxesLayout kept, AxesLayout reduced, int xOffset, int yOffset,
        int outputs, int count, int perGroup)
        where T : unmanaged where C : struct, ICodec<T>
    {
        C c = default;
        int tid = Group.IdxX, threads = Group.DimX, group = Grid.IdxX, groups = Grid.DimX;
        if (perGroup != 0)
        {
            for (int o = group; o < outputs; o += groups)
            {
                int b = xOffset + kept.Offset(o);
                double best = double.NegativeInfinity;
                int bestIndex = int.MaxValue;
                for (int r = tid; r < count; r += threads)
                {
                    double v = c.ToDouble(x[b + reduced.Offset(r)]);
                    if (GroupReduce.Better(v, r, best, bestIndex))
                    {
                        best = v;
                        bestIndex = r;
                    }
                }
                int index = GroupReduce.ArgMax(best, bestIndex);
                if (tid == 0) y[yOffset + o] = index;
            }
            return;
        }
        for (int o = group * threads + tid; o < outputs; o += groups * threads)
        {
            int b = xOffset + kept.Offset(o);
            double best = c.ToDouble(x[b]);
            int bestIndex = 0;
            for (int r = 1; r < count && !double.IsNaN(best); r++)
            {
                double v = c.ToDouble(x[b + reduced.Offset(r)]);
                if (v > best || double.IsNaN(v))
                {
                    best = v;
                    bestIndex = r;
                }
            }
            y[yOffset + o] = bestIndex;
        }
    }

    // ---- launcher ----

    public static void Reduce(GpuBackend b, Op op, Tensor x, Tensor y, ReduceAttrs a)
    {
        ReduceLayout.CheckOperands(op, x, y, a);
        if (op is Op.Mean or Op.Var && !x.DType.IsFloat())
            throw new NotSupportedException($"{op} needs a floating-point tensor, got {x.Describe()}");

        var keptAxes = new List<(int, int)>();
        var reducedAxes = new List<(int, int)>();
        for (int d = 0; d < x.Rank; d++) (Array.IndexOf(a.Axes, d) >= 0 ? reducedAxes : keptAxes).Add((x.Shape[d], x.Strides[d]));
        int outputs = y.Numel;
        if (outputs == 0) return;
        int count = reducedAxes.Aggregate(1, (p, s) => p * s.Item1);
        var kept = AxesLayout.Create(keptAxes, op.ToString());
        var reduced = count == 0 ? new AxesLayout() : AxesLayout.Create(reducedAxes, op.ToString());
        // Contiguous rows, or too few outputs to keep a GPU busy with one thread each: a group per output.
        bool perGroup = count >= 32 && (reduced.InnerStride == 1 || outputs < 8 * b.GroupSize);
        var config = perGroup ? b.GroupPerItem(outputs) : b.Grid(outputs);
        var xs = CopyKernels.View((GpuStorage)x.Storage);
        int g = perGroup ? 1 : 0;
        if (op == Op.ArgMax)
        {
            b.Launch(ArgMaxSpec(x.DType), config, xs, ((GpuStorage)y.Storage).View<long>(), kept, reduced, x.Offset, y.Offset, outputs, count, g);
            return;
        }
        var ys = CopyKernels.View((GpuStorage)y.Storage);
        int kind = op switch { Op.Max => KindMax, Op.Min => KindMin, Op.Var => KindVar, _ => KindSum };
        if (x.DType.IsInteger())
        {
            b.Launch(IntegerSpec(op, x.DType), config, xs, ys, kept, reduced, x.Offset, y.Offset, outputs, count, kind, g);
            return;
        }
        // Mean multiplies by 1 / count (0 * inf = NaN for an empty mean, as PyTorch); Var divides by max(0, count - correction).
        double scale = op == Op.Mean ? 1.0 / count : op == Op.Var ? Math.Max(0, count - a.Correction) : 1.0;
        b.Launch(FloatSpec(op, x.DType), config, xs, ys, kept, reduced, x.Offset, y.Offset, outputs, count, kind, scale, g, x.DType == DType.F64 ? 1 : 0);
    }

    // One kernel per dtype serves Sum, Mean, Max, Min and Var (the kind is an argument): Reduce_F32, ...
    private static KernelSpec FloatSpec(Op op, DType t) => new($"Reduce_{t}", t switch
    {
        DType.F32 => Float<float, F32Codec>(),
        DType.F64 => Float<double, F64Codec>(),
        DType.F16 => Float<ushort, F16Codec>(),
        DType.BF16 => Float<ushort, BF16Codec>(),
        _ => throw new NotSupportedException($"the GPU backend has no {op} kernel for dtype {t}"),
    });

    private static KernelSpec IntegerSpec(Op op, DType t) => new($"Reduce_{t}", t switch
    {
        DType.I32 => Integer<int, I32Codec>(),
        DType.I64 => Integer<long, I64Codec>(),
        DType.I8 => Integer<sbyte, I8Codec>(),
        DType.U8 => Integer<byte, U8Codec>(),
        _ => throw new NotSupportedException($"the GPU backend has no {op} kernel for dtype {t}"),
    });

    private static KernelSpec ArgMaxSpec(DType t) => new($"ArgMax_{t}", t switch
    {
        DType.F32 => ArgMax<float, F32Codec>(),
        DType.F64 => ArgMax<double, F64Codec>(),
        DType.F16 => ArgMax<ushort, F16Codec>(),
        DType.BF16 => ArgMax<ushort, BF16Codec>(),
        DType.I32 => ArgMax<int, I32Codec>(),
        DType.I64 => ArgMax<long, I64Codec>(),
        DType.I8 => ArgMax<sbyte, I8Codec>(),
        DType.U8 => ArgMax<byte, U8Codec>(),
        _ => throw new NotSupportedException($"the GPU backend has no ArgMax kernel for dtype {t}"),
    });

    private static MethodInfo Float<T, C>() where T : unmanaged where C : struct, ICodec<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, AxesLayout, AxesLayout, int, int, int, int, int, double, int, int>)FloatKernel<T, C>).Method;

    private static MethodInfo Integer<T, C>() where T : unmanaged where C : struct, ICodec<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, AxesLayout, AxesLayout, int, int, int, int, int, int>)IntegerKernel<T, C>).Method;

    private static MethodInfo ArgMax<T, C>() where T : unmanaged where C : struct, ICodec<T> =>
        ((Action<ArrayView<T>, ArrayView<long>, AxesLayout, AxesLayout, int, int, int, int, int>)ArgMaxKernel<T, C>).Method;

    public static IEnumerable<KernelSpec> Specs()
    {
        foreach (var t in new[] { DType.F32, DType.F64, DType.F16, DType.BF16 }) yield return FloatSpec(Op.Sum, t);
        foreach (var t in new[] { DType.I32, DType.I64, DType.I8, DType.U8 }) yield return IntegerSpec(Op.Sum, t);
        foreach (var t in DTypeInfo.ElementTypes) yield return ArgMaxSpec(t);
    }
}
