namespace ManagedTensor.Cpu;

/// <summary>
/// Index select / add (1-D index along one axis) and gather / scatter-add (index of the input's rank),
/// with PyTorch's semantics. Indices are checked before any thread starts, so a bad index throws
/// IndexOutOfRangeException (naming op, value and axis size) rather than an AggregateException.
/// Tensors are viewed as (outer, axis, inner): select and add then move whole inner rows, which for an
/// embedding table (axis 0) is one row copy per token.
/// </summary>
internal static class CpuIndex
{
    /// <summary>(outer, size, inner) around <paramref name="axis"/> of <paramref name="shape"/>.</summary>
    private static (int Outer, int Size, int Inner) Split(int[] shape, int axis)
    {
        int outer = 1, inner = 1;
        for (int d = 0; d < axis; d++) outer *= shape[d];
        for (int d = axis + 1; d < shape.Length; d++) inner *= shape[d];
        return (outer, shape[axis], inner);
    }

    public static void IndexSelect(Tensor x, Tensor idx, Tensor y, int axis)
    {
        var ids = NnKernels.ReadIndices(idx, "IndexSelect");
        var (outer, size, inner) = Split(x.Shape, axis);
        NnKernels.CheckIndices(ids, size, axis, "IndexSelect");
        switch (x.DType)
        {
            case DType.F32: IndexSelect<float>(x, ids, y, outer, size, inner); break;
            case DType.F64: IndexSelect<double>(x, ids, y, outer, size, inner); break;
            case DType.F16: IndexSelect<Half>(x, ids, y, outer, size, inner); break;
            case DType.BF16: IndexSelect<BFloat16>(x, ids, y, outer, size, inner); break;
            case DType.I32: IndexSelect<int>(x, ids, y, outer, size, inner); break;
            case DType.I64: IndexSelect<long>(x, ids, y, outer, size, inner); break;
            case DType.I8: IndexSelect<sbyte>(x, ids, y, outer, size, inner); break;
            case DType.U8: IndexSelect<byte>(x, ids, y, outer, size, inner); break;
            default: throw NnKernels.Unsupported("IndexSelect", x);
        }
    }

    /// <summary>y[o, i, :] = x[o, ids[i], :]; x (outer, size, inner), y (outer, n, inner). A pure copy, so any dtype.</summary>
    private static void IndexSelect<T>(Tensor xt, long[] ids, Tensor yt, int outer, int size, int inner) where T : unmanaged
    {
        var x = NnKernels.Buf<T>(xt);
        var y = NnKernels.Buf<T>(yt);
        int n = ids.Length;
        NnKernels.For(outer * n, inner, (_, r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                int o = r / n, i = r - o * n;
                int src = x.Offset + (o * size + (int)ids[i]) * inner;
                Array.Copy(x.Data, src, y.Data, y.Offset + r * inner, inner);
            }
        });
    }

    public static void IndexAdd(Tensor dst, Tensor idx, Tensor src, int axis)
    {
        var ids = NnKernels.ReadIndices(idx, "IndexAdd");
        var (outer, size, inner) = Split(dst.Shape, axis);
        var expected = (int[])dst.Shape.Clone();
        expected[axis] = ids.Length;
        if (!src.Shape.AsSpan().SequenceEqual(expected))
            throw new ArgumentException($"IndexAdd: source {src.Describe()} must have shape {Tensor.ShapeString(expected)} (destination {dst.Describe()}, {ids.Length} indices on axis {axis})");
        NnKernels.CheckIndices(ids, size, axis, "IndexAdd");
        switch (dst.DType)
        {
            case DType.F32: IndexAdd<float>(dst, ids, src, outer, size, inner); break;
            case DType.F64: IndexAdd<double>(dst, ids, src, outer, size, inner); break;
            default: throw NnKernels.Unsupported("IndexAdd", dst);
        }
    }

    /// <summary>
    /// dst[o, ids[i], :] += src[o, i, :]; dst (outer, size, inner), src (outer, n, inner).
    /// Repeated ids add up. Work is split over (outer, column block) pairs: each task owns its destination
    /// columns and walks i in order, so there are no races and the sum order is fixed.
    /// </summary>
    private static void IndexAdd<T>(Tensor dstT, long[] ids, Tensor srcT, int outer, int size, int inner)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        var dst = NnKernels.Buf<T>(dstT);
        var src = NnKernels.Buf<T>(srcT);
        int n = ids.Length;
        const int Block = 256;
        int blocks = (inner + Block - 1) / Block;
        NnKernels.For(outer * blocks, (long)n * Math.Min(inner, Block), (_, t0, t1) =>
        {
            for (int t = t0; t < t1; t++)
            {
                int o = t / blocks, j0 = (t - o * blocks) * Block, len = Math.Min(Block, inner - j0);
                for (int i = 0; i < n; i++)
                {
                    var s = new ReadOnlySpan<T>(src.Data, src.Offset + (o * n + i) * inner + j0, len);
                    var d = new Span<T>(dst.Data, dst.Offset + (o * size + (int)ids[i]) * inner + j0, len);
                    System.Numerics.Tensors.TensorPrimitives.Add(d, s, d);
                }
            }
        });
    }

    /// <summary>Checks torch's gather/scatter rule: idx.shape[d] &lt;= x.shape[d] on every axis but <paramref name="axis"/>.</summary>
    private static void CheckGatherShape(Tensor x, Tensor idx, int axis, string op)
    {
        if (idx.Rank != x.Rank) throw new ArgumentException($"{op}: index {idx.Describe()} must have the rank of {x.Describe()}");
        for (int d = 0; d < x.Rank; d++)
            if (d != axis && idx.Shape[d] > x.Shape[d])
                throw new ArgumentException($"{op}: index {idx.Describe()} is larger than {x.Describe()} on axis {d} (only axis {axis} may differ)");
    }

    public static void Gather(Tensor x, Tensor idx, Tensor y, int axis)
    {
        CheckGatherShape(x, idx, axis, "Gather");
        var ids = NnKernels.ReadIndices(idx, "Gather");
        NnKernels.CheckIndices(ids, x.Shape[axis], axis, "Gather");
        switch (x.DType)
        {
            case DType.F32: Gather<float>(x, ids, idx.Shape, y, axis); break;
            case DType.F64: Gather<double>(x, ids, idx.Shape, y, axis); break;
            case DType.F16: Gather<Half>(x, ids, idx.Shape, y, axis); break;
            case DType.BF16: Gather<BFloat16>(x, ids, idx.Shape, y, axis); break;
            case DType.I32: Gather<int>(x, ids, idx.Shape, y, axis); break;
            case DType.I64: Gather<long>(x, ids, idx.Shape, y, axis); break;
            case DType.I8: Gather<sbyte>(x, ids, idx.Shape, y, axis); break;
            case DType.U8: Gather<byte>(x, ids, idx.Shape, y, axis); break;
            default: throw NnKernels.Unsupported("Gather", x);
        }
    }

    /// <summary>
    /// The x offset of the start of each index row (all axes but the last), leaving out <paramref name="axis"/>:
    /// element (row, j) of the index reads x at rowBase[row] + id * xStride[axis] + (j * xStride[last] unless axis is last).
    /// </summary>
    private static int[] RowBases(int[] idxShape, int[] xStrides, int axis)
    {
        int rank = idxShape.Length, rows = 1;
        for (int d = 0; d < rank - 1; d++) rows *= idxShape[d];
        var bases = new int[rows];
        var coord = new int[Math.Max(rank - 1, 0)];
        for (int r = 0; r < rows; r++)
        {
            int off = 0;
            for (int d = 0; d < rank - 1; d++)
                if (d != axis) off += coord[d] * xStrides[d];
            bases[r] = off;
            for (int d = rank - 2; d >= 0; d--) // odometer over the leading axes
            {
                if (++coord[d] < idxShape[d]) break;
                coord[d] = 0;
            }
        }
        return bases;
    }

    /// <summary>y[.., j, ..] = x[.., ids[.., j, ..], ..] along axis; y has the index's shape.</summary>
    private static void Gather<T>(Tensor xt, long[] ids, int[] idxShape, Tensor yt, int axis) where T : unmanaged
    {
        var x = NnKernels.Buf<T>(xt);
        var y = NnKernels.Buf<T>(yt);
        int rank = idxShape.Length, last = idxShape[^1];
        var bases = RowBases(idxShape, xt.Strides, axis);
        int axisStride = xt.Strides[axis], colStride = axis == rank - 1 ? 0 : 1;
        NnKernels.For(bases.Length, last, (_, r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                int xb = x.Offset + bases[r], p = r * last;
                for (int j = 0; j < last; j++)
                    y.Data[y.Offset + p + j] = x.Data[xb + (int)ids[p + j] * axisStride + j * colStride];
            }
        });
    }

    public static void ScatterAdd(Tensor dst, Tensor idx, Tensor src, int axis)
    {
        CheckGatherShape(dst, idx, axis, "ScatterAdd");
        if (!src.Shape.AsSpan().SequenceEqual(idx.Shape))
            throw new ArgumentException($"ScatterAdd: source {src.Describe()} must have the index's shape {Tensor.ShapeString(idx.Shape)}");
        var ids = NnKernels.ReadIndices(idx, "ScatterAdd");
        NnKernels.CheckIndices(ids, dst.Shape[axis], axis, "ScatterAdd");
        switch (dst.DType)
        {
            case DType.F32: ScatterAdd<float>(dst, ids, idx.Shape, src, axis); break;
            case DType.F64: ScatterAdd<double>(dst, ids, idx.Shape, src, axis); break;
            default: throw NnKernels.Unsupported("ScatterAdd", dst);
        }
    }

    /// <summary>
    /// dst[.., ids[.., j, ..], ..] += src[.., j, ..] along axis. Index rows with different coordinates on
    /// axis 0 write disjoint parts of dst, so when axis != 0 the work is split by axis-0 slices; within a
    /// slice rows run in order (repeated indices add up in a fixed order).
    /// </summary>
    private static void ScatterAdd<T>(Tensor dstT, long[] ids, int[] idxShape, Tensor srcT, int axis)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        var dst = NnKernels.Buf<T>(dstT);
        var src = NnKernels.Buf<T>(srcT);
        int rank = idxShape.Length, last = idxShape[^1];
        var bases = RowBases(idxShape, dstT.Strides, axis);
        int axisStride = dstT.Strides[axis], colStride = axis == rank - 1 ? 0 : 1;
        int slices = axis == 0 || rank == 1 ? 1 : idxShape[0];
        int rowsPerSlice = bases.Length / Math.Max(slices, 1);
        NnKernels.For(slices, (long)rowsPerSlice * last, (_, s0, s1) =>
        {
            for (int r = s0 * rowsPerSlice; r < s1 * rowsPerSlice; r++)
            {
                int db = dst.Offset + bases[r], p = r * last;
                for (int j = 0; j < last; j++)
                    dst.Data[db + (int)ids[p + j] * axisStride + j * colStride] += src.Data[src.Offset + p + j];
            }
        });
    }
}
