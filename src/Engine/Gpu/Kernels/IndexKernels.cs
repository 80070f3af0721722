using System.Numerics;
using System.Reflection;
using ILGPU;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>The index shape and the source's strides for gather / scatter-add (axis stride kept apart).</summary>
internal unsafe struct GatherLayout
{
    public int Rank, Axis, AxisStride, AxisSize;
    public fixed int Shape[8];   // the index's shape
    public fixed int Strides[8]; // x's strides, 0 on the axis (the index supplies that coordinate)

    /// <summary>Offset in x of index element <paramref name="i"/> (row-major over the index shape), without the axis term.</summary>
    public int Offset(int i)
    {
        int o = 0;
        for (int d = Rank - 1; d >= 0; d--)
        {
            int size = Shape[d];
            o += i % size * Strides[d];
            i /= size;
        }
        return o;
    }
}

/// <summary>target += value, atomically (red.add / atom.add on the GPU).</summary>
internal interface IAtomicAdd<T> where T : unmanaged
{
    void Add(ref T target, T value);
}

internal readonly struct AtomicF32 : IAtomicAdd<float>
{
    public void Add(ref float target, float value) => Atomic.Add(ref target, value);
}

internal readonly struct AtomicF64 : IAtomicAdd<double>
{
    public void Add(ref double target, double value) => Atomic.Add(ref target, value);
}

/// <summary>
/// Index select / add (a 1-D index along one axis) and gather / scatter-add (an index of the input's
/// rank), with PyTorch's semantics, one thread per element. Index values are checked in the kernel: a
/// bad one is reported through <see cref="KernelStatus"/> and the host throws at the next
/// synchronization. The adds use atomics (red.add on the GPU), so repeated indices add up in an
/// unspecified order: the result matches the CPU to rounding, not bit for bit.
/// Tensors are seen as (outer, axis, inner); every input is dense (the front end makes it so).
/// </summary>
internal static class IndexKernels
{
    // ---- kernels ----

    /// <summary>y[o, i, j] = x[o, idx[i], j]; x (outer, size, inner), y (outer, n, inner).</summary>
    public static void IndexSelectKernel<T, TI, CI>(ArrayView<T> x, ArrayView<TI> idx, ArrayView<T> y, ArrayView<int> status,
        int xOffset, int idxOffset, int yOffset, int n, int size, int inner, int total)
        where T : unmanaged where TI : unmanaged where CI : struct, ICodec<TI>
    {
        CI ci = default;
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int j = e % inner, r = e / inner, i = r % n, o = r / n;
            long id = ci.ToLong(idx[idxOffset + i]);
            if (id < 0 || id >= size)
            {
                KernelStatus.Report(status, Op.IndexSelect, id, size);
                continue;
            }
            y[yOffset + e] = x[xOffset + (o * size + (int)id) * inner + j];
        }
    }

    /// <summary>dst[o, idx[i], j] += src[o, i, j] (atomic).</summary>
    public static void IndexAddKernel<T, TI, CI, TA>(ArrayView<T> dst, ArrayView<TI> idx, ArrayView<T> src, ArrayView<int> status,
        int dstOffset, int idxOffset, int srcOffset, int n, int size, int inner, int total)
        where T : unmanaged where TI : unmanaged where CI : struct, ICodec<TI> where TA : struct, IAtomicAdd<T>
    {
        CI ci = default;
        TA atomic = default;
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int j = e % inner, r = e / inner, i = r % n, o = r / n;
            long id = ci.ToLong(idx[idxOffset + i]);
            if (id < 0 || id >= size)
            {
                KernelStatus.Report(status, Op.IndexAdd, id, size);
                continue;
            }
            atomic.Add(ref dst[dstOffset + (o * size + (int)id) * inner + j], src[srcOffset + e]);
        }
    }

    /// <summary>y[e] = x[offset(e) + idx[e] * axisStride] over the index's shape.</summary>
    public static void GatherKernel<T, TI, CI>(ArrayView<T> x, ArrayView<TI> idx, ArrayView<T> y, ArrayView<int> status,
        GatherLayout g, int xOffset, int idxOffset, int yOffset, int total)
        where T : unmanaged where TI : unmanaged where CI : struct, ICodec<TI>
    {
        CI ci = default;
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            long id = ci.ToLong(idx[idxOffset + e]);
            if (id < 0 || id >= g.AxisSize)
            {
                KernelStatus.Report(status, Op.Gather, id, g.AxisSize);
                continue;
            }
            y[yOffset + e] = x[xOffset + g.Offset(e) + (int)id * g.AxisStride];
        }
    }

    /// <summary>dst[offset(e) + idx[e] * axisStride] += src[e] (atomic).</summary>
    public static void ScatterAddKernel<T, TI, CI, TA>(ArrayView<T> dst, ArrayView<TI> idx, ArrayView<T> src, ArrayView<int> status,
        GatherLayout g, int dstOffset, int idxOffset, int srcOffset, int total)
        where T : unmanaged where TI : unmanaged where CI : struct, ICodec<TI> where TA : struct, IAtomicAdd<T>
    {
        CI ci = default;
        TA atomic = default;
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            long id = ci.ToLong(idx[idxOffset + e]);
            if (id < 0 || id >= g.AxisSize)
            {
                KernelStatus.Report(status, Op.ScatterAdd, id, g.AxisSize);
                continue;
            }
            atomic.Add(ref dst[dstOffset + g.Offset(e) + (int)id * g.AxisStride], src[srcOffset + e]);
        }
    }

    // ---- launchers ----

    private static (int Outer, int Size, int Inner) Split(int[] shape, int axis)
    {
        int outer = 1, inner = 1;
        for (int d = 0; d < axis; d++) outer *= shape[d];
        for (int d = axis + 1; d < shape.Length; d++) inner *= shape[d];
        return (outer, shape[axis], inner);
    }

    private static object V(Tensor t) => CopyKernels.View((GpuStorage)t.Storage);

    private static void CheckIndex(Tensor idx, string op)
    {
        if (idx.DType is not (DType.I32 or DType.I64)) throw new ArgumentException($"{op}: index must be I32 or I64, got {idx.Describe()}");
        if (!idx.IsContiguous) throw new ArgumentException($"{op}: index {idx.Describe()} must be dense (the front end makes it so)");
    }

    public static void IndexSelect(GpuBackend b, Tensor x, Tensor idx, Tensor y, int axis)
    {
        CheckIndex(idx, "IndexSelect");
        var (_, size, inner) = Split(x.Shape, axis);
        if (y.Numel == 0) return;
        b.Launch(SelectSpec(x.DType, idx.DType), b.Grid(y.Numel), V(x), V(idx), V(y), b.Status,
            x.Offset, idx.Offset, y.Offset, idx.Numel, size, inner, y.Numel);
    }

    public static void IndexAdd(GpuBackend b, Tensor dst, Tensor idx, Tensor src, int axis)
    {
        CheckIndex(idx, "IndexAdd");
        if (dst.DType != src.DType) throw new ArgumentException($"IndexAdd: {src.Describe()} must have the dtype of {dst.Describe()}");
        if (idx.Rank != 1) throw new ArgumentException($"IndexAdd: index must be 1-D, got {idx.Describe()}");
        var (_, size, inner) = Split(dst.Shape, axis);
        var expected = (int[])dst.Shape.Clone();
        expected[axis] = idx.Numel;
        if (!src.Shape.AsSpan().SequenceEqual(expected))
            throw new ArgumentException($"IndexAdd: source {src.Describe()} must have shape {Tensor.ShapeString(expected)} (destination {dst.Describe()}, {idx.Numel} indices on axis {axis})");
        if (src.Numel == 0) return;
        b.Launch(AddSpec(dst.DType, idx.DType), b.Grid(src.Numel), V(dst), V(idx), V(src), b.Status,
            dst.Offset, idx.Offset, src.Offset, idx.Numel, size, inner, src.Numel);
    }

    private static unsafe GatherLayout Layout(Tensor x, Tensor idx, int axis, string op)
    {
        if (idx.Rank != x.Rank) throw new ArgumentException($"{op}: index {idx.Describe()} must have the rank of {x.Describe()}");
        if (x.Rank > 8) throw new NotSupportedException($"{op}: the GPU kernel takes at most 8 axes, got {x.Describe()}");
        for (int d = 0; d < x.Rank; d++)
            if (d != axis && idx.Shape[d] > x.Shape[d])
                throw new ArgumentException($"{op}: index {idx.Describe()} is larger than {x.Describe()} on axis {d} (only axis {axis} may differ)");
        var g = new GatherLayout { Rank = x.Rank, Axis = axis, AxisStride = x.Strides[axis], AxisSize = x.Shape[axis] };
        for (int d = 0; d < x.Rank; d++)
        {
            g.Shape[d] = idx.Shape[d];
            g.Strides[d] = d == axis ? 0 : x.Strides[d];
        }
        return g;
    }

    public static void Gather(GpuBackend b, Tensor x, Tensor idx, Tensor y, int axis)
    {
        CheckIndex(idx, "Gather");
        var g = Layout(x, idx, axis, "Gather");
        if (y.Numel == 0) return;
        b.Launch(GatherSpec(x.DType, idx.DType), b.Grid(y.Numel), V(x), V(idx), V(y), b.Status, g, x.Offset, idx.Offset, y.Offset, y.Numel);
    }

    public static void ScatterAdd(GpuBackend b, Tensor dst, Tensor idx, Tensor src, int axis)
    {
        CheckIndex(idx, "ScatterAdd");
        if (dst.DType != src.DType) throw new ArgumentException($"ScatterAdd: {src.Describe()} must have the dtype of {dst.Describe()}");
        var g = Layout(dst, idx, axis, "ScatterAdd");
        if (!src.Shape.AsSpan().SequenceEqual(idx.Shape))
            throw new ArgumentException($"ScatterAdd: source {src.Describe()} must have the index's shape {Tensor.ShapeString(idx.Shape)}");
        if (src.Numel == 0) return;
        b.Launch(ScatterSpec(dst.DType, idx.DType), b.Grid(src.Numel), V(dst), V(idx), V(src), b.Status, g, dst.Offset, idx.Offset, src.Offset, src.Numel);
    }

    // ---- specs ----

    private static KernelSpec ByIndex(DType idx, Func<KernelSpec> i32, Func<KernelSpec> i64) => idx == DType.I32 ? i32() : i64();

    private static KernelSpec SelectSpec(DType t, DType idx) => ByIndex(idx, () => Select<int, I32Codec>(t, idx), () => Select<long, I64Codec>(t, idx));

    private static KernelSpec Select<TI, CI>(DType t, DType idx) where TI : unmanaged where CI : struct, ICodec<TI> => new($"IndexSelect_{t}_{idx}", t switch
    {
        DType.F32 => SelectM<float, TI, CI>(),
        DType.F64 => SelectM<double, TI, CI>(),
        DType.F16 or DType.BF16 => SelectM<ushort, TI, CI>(),
        DType.I32 => SelectM<int, TI, CI>(),
        DType.I64 => SelectM<long, TI, CI>(),
        DType.I8 => SelectM<sbyte, TI, CI>(),
        DType.U8 => SelectM<byte, TI, CI>(),
        _ => throw new NotSupportedException($"IndexSelect of {t}"),
    });

    private static MethodInfo SelectM<T, TI, CI>() where T : unmanaged where TI : unmanaged where CI : struct, ICodec<TI> =>
        ((Action<ArrayView<T>, ArrayView<TI>, ArrayView<T>, ArrayView<int>, int, int, int, int, int, int, int>)IndexSelectKernel<T, TI, CI>).Method;

    private static KernelSpec GatherSpec(DType t, DType idx) => ByIndex(idx, () => GatherOf<int, I32Codec>(t, idx), () => GatherOf<long, I64Codec>(t, idx));

    private static KernelSpec GatherOf<TI, CI>(DType t, DType idx) where TI : unmanaged where CI : struct, ICodec<TI> => new($"Gather_{t}_{idx}", t switch
    {
        DType.F32 => GatherM<float, TI, CI>(),
        DType.F64 => GatherM<double, TI, CI>(),
        DType.F16 or DType.BF16 => GatherM<ushort, TI, CI>(),
        DType.I32 => GatherM<int, TI, CI>(),
        DType.I64 => GatherM<long, TI, CI>(),
        DType.I8 => GatherM<sbyte, TI, CI>(),
        DType.U8 => GatherM<byte, TI, CI>(),
        _ => throw new NotSupportedException($"Gather of {t}"),
    });

    private static MethodInfo GatherM<T, TI, CI>() where T : unmanaged where TI : unmanaged where CI : struct, ICodec<TI> =>
        ((Action<ArrayView<T>, ArrayView<TI>, ArrayView<T>, ArrayView<int>, GatherLayout, int, int, int, int>)GatherKernel<T, TI, CI>).Method;

    private static KernelSpec AddSpec(DType t, DType idx) => (t, idx) switch
    {
        (DType.F32, DType.I32) => new($"IndexAdd_F32_I32", AddM<float, int, I32Codec, AtomicF32>()),
        (DType.F32, _) => new($"IndexAdd_F32_I64", AddM<float, long, I64Codec, AtomicF32>()),
        (DType.F64, DType.I32) => new($"IndexAdd_F64_I32", AddM<double, int, I32Codec, AtomicF64>()),
        (DType.F64, _) => new($"IndexAdd_F64_I64", AddM<double, long, I64Codec, AtomicF64>()),
        _ => throw new NotSupportedException($"the GPU backend has no IndexAdd kernel for dtype {t} (F32 and F64 only)"),
    };

    private static MethodInfo AddM<T, TI, CI, TA>() where T : unmanaged where TI : unmanaged where CI : struct, ICodec<TI> where TA : struct, IAtomicAdd<T> =>
        ((Action<ArrayView<T>, ArrayView<TI>, ArrayView<T>, ArrayView<int>, int, int, int, int, int, int, int>)IndexAddKernel<T, TI, CI, TA>).Method;

    private static KernelSpec ScatterSpec(DType t, DType idx) => (t, idx) switch
    {
        (DType.F32, DType.I32) => new($"ScatterAdd_F32_I32", ScatterM<float, int, I32Codec, AtomicF32>()),
        (DType.F32, _) => new($"ScatterAdd_F32_I64", ScatterM<float, long, I64Codec, AtomicF32>()),
        (DType.F64, DType.I32) => new($"ScatterAdd_F64_I32", ScatterM<double, int, I32Codec, AtomicF64>()),
        (DType.F64, _) => new($"ScatterAdd_F64_I64", ScatterM<double, long, I64Codec, AtomicF64>()),
        _ => throw new NotSupportedException($"the GPU backend has no ScatterAdd kernel for dtype {t} (F32 and F64 only)"),
    };

    private static MethodInfo ScatterM<T, TI, CI, TA>() where T : unmanaged where TI : unmanaged where CI : struct, ICodec<TI> where TA : struct, IAtomicAdd<T> =>
        ((Action<ArrayView<T>, ArrayView<TI>, ArrayView<T>, ArrayView<int>, GatherLayout, int, int, int, int>)ScatterAddKernel<T, TI, CI, TA>).Method;

    public static IEnumerable<KernelSpec> Specs()
    {
        foreach (var idx in new[] { DType.I32, DType.I64 })
        {
            foreach (var t in DTypeInfo.ElementTypes)
            {
                yield return SelectSpec(t, idx);
                yield return GatherSpec(t, idx);
            }
            foreach (var t in new[] { DType.F32, DType.F64 })
            {
                yield return AddSpec(t, idx);
                yield return ScatterSpec(t, idx);
            }
        }
    }
}
