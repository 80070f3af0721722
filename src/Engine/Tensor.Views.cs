namespace ManagedTensor;

/// <summary>Movement ops: views that share storage (no copy), plus Contiguous, Cat, Stack and Split.</summary>
public sealed partial class Tensor
{
    private Tensor View(int[] shape, int[] strides, int offset) => new(Storage, shape, strides, offset);

    /// <summary>
    /// A tensor of the new shape with the same elements in row-major order. One -1 is inferred.
    /// A view when the strides allow it (as torch.view), otherwise a contiguous copy (as torch.reshape).
    /// </summary>
    public Tensor Reshape(params int[] shape)
    {
        var target = InferShape(shape);
        var strides = ViewStrides(target);
        Tensor result = strides is not null ? View(target, strides, Offset) : ContiguousCopy().ViewUnrecorded(target);
        return Record(result, Op.Reshape, new ShapeAttrs(Shape), [this]);
    }

    private Tensor ViewUnrecorded(int[] shape) => View(shape, ContiguousStrides(shape), Offset);

    public Tensor View(params int[] shape) => Reshape(shape);

    public Tensor Flatten() => Reshape(Numel);

    private int[] InferShape(int[] shape)
    {
        var s = (int[])shape.Clone();
        int infer = -1;
        long known = 1;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException($"reshape {Describe()} to {ShapeString(shape)}: only one -1 allowed");
                infer = i;
            }
            else if (s[i] < 0) throw new ArgumentException($"reshape {Describe()} to {ShapeString(shape)}: negative size");
            else known *= s[i];
        }
        if (infer >= 0)
        {
            if (known == 0 || Numel % known != 0)
                throw new ArgumentException($"reshape {Describe()} to {ShapeString(shape)}: cannot infer -1");
            s[infer] = (int)(Numel / known);
            known *= s[infer];
        }
        if (known != Numel)
            throw new ArgumentException($"reshape {Describe()} ({Numel} elements) to {ShapeString(shape)} ({known} elements): sizes differ");
        return s;
    }

    /// <summary>
    /// Strides that make <paramref name="target"/> a view of this tensor, or null when a copy is needed.
    /// Walks groups of old axes that are contiguous with each other (as PyTorch's computeStride).
    /// </summary>
    private int[]? ViewStrides(int[] target)
    {
        if (Numel == 0 || IsContiguous) return ContiguousStrides(target);
        var result = new int[target.Length];
        int viewD = target.Length - 1;
        long chunkBase = Strides.Length > 0 ? Strides[^1] : 1;
        long tensorNumel = 1, viewNumel = 1;
        for (int d = Rank - 1; d >= 0; d--)
        {
            tensorNumel *= Shape[d];
            // A chunk ends where the next-outer old axis is not contiguous with this one.
            if (d == 0 || (Shape[d - 1] != 1 && Strides[d - 1] != tensorNumel * chunkBase))
            {
                while (viewD >= 0 && (viewNumel < tensorNumel || target[viewD] == 1))
                {
                    result[viewD] = (int)(viewNumel * chunkBase);
                    viewNumel *= target[viewD];
                    viewD--;
                }
                if (viewNumel != tensorNumel) return null;
                if (d > 0)
                {
                    chunkBase = Strides[d - 1];
                    tensorNumel = 1;
                    viewNumel = 1;
                }
            }
        }
        return viewD == -1 ? result : null;
    }

    /// <summary>Reorders axes: output axis i is input axis dims[i].</summary>
    public Tensor Permute(params int[] dims)
    {
        if (dims.Length != Rank) throw new ArgumentException($"permute {Describe()}: {dims.Length} dims given for rank {Rank}");
        var seen = new bool[Rank];
        var shape = new int[Rank];
        var strides = new int[Rank];
        for (int i = 0; i < Rank; i++)
        {
            int d = NormalizeAxis(dims[i]);
            if (seen[d]) throw new ArgumentException($"permute {Describe()}: dims {ShapeString(dims)} repeat axis {d}");
            seen[d] = true;
            shape[i] = Shape[d];
            strides[i] = Strides[d];
        }
        return Record(View(shape, strides, Offset), Op.Permute, new PermuteAttrs(dims.Select(NormalizeAxis).ToArray()), [this]);
    }

    /// <summary>Swaps two axes.</summary>
    public Tensor Transpose(int axis0, int axis1)
    {
        var dims = Enumerable.Range(0, Rank).ToArray();
        int a = NormalizeAxis(axis0), b = NormalizeAxis(axis1);
        (dims[a], dims[b]) = (dims[b], dims[a]);
        return Permute(dims);
    }

    /// <summary>The transpose of the last two axes (PyTorch's mT).</summary>
    public Tensor MT => Transpose(-2, -1);

    /// <summary>Elements [start, start + length) along <paramref name="axis"/>, as a view.</summary>
    public Tensor Narrow(int axis, int start, int length)
    {
        int a = NormalizeAxis(axis);
        if (start < 0 || length < 0 || start + length > Shape[a])
            throw new ArgumentOutOfRangeException(nameof(start), $"narrow {Describe()} axis {a}: [{start}, {start + length}) is outside [0, {Shape[a]})");
        var shape = (int[])Shape.Clone();
        shape[a] = length;
        var view = View(shape, (int[])Strides.Clone(), Offset + start * Strides[a]);
        return Record(view, Op.Slice, new SliceAttrs(a, start, length), [this]);
    }

    /// <summary>Elements [start, end) along <paramref name="axis"/>; negative indices count from the end.</summary>
    public Tensor Slice(int axis, int start, int end)
    {
        int n = Shape[NormalizeAxis(axis)];
        if (start < 0) start += n;
        if (end < 0) end += n;
        return Narrow(axis, start, Math.Max(0, end - start));
    }

    /// <summary>A view broadcast to <paramref name="shape"/> (stride 0 on expanded axes); -1 keeps a size.</summary>
    public Tensor Expand(params int[] shape)
    {
        if (shape.Length < Rank) throw new ArgumentException($"expand {Describe()} to {ShapeString(shape)}: fewer dims than the tensor");
        var result = ExpandUnrecorded(shape);
        return ReferenceEquals(result, this) ? this : Record(result, Op.Expand, new ShapeAttrs(Shape), [this]);
    }

    /// <summary>Expand without a graph record (the front end broadcasts op inputs this way).</summary>
    internal Tensor ExpandUnrecorded(int[] shape)
    {
        if (shape.Length == Rank && shape.AsSpan().SequenceEqual(Shape)) return this;
        int lead = shape.Length - Rank;
        var outShape = new int[shape.Length];
        var strides = new int[shape.Length];
        for (int i = 0; i < shape.Length; i++)
        {
            int want = shape[i];
            if (i < lead)
            {
                if (want < 0) throw new ArgumentException($"expand {Describe()} to {ShapeString(shape)}: -1 not allowed for new axes");
                outShape[i] = want;
                strides[i] = 0;
                continue;
            }
            int have = Shape[i - lead];
            if (want == -1 || want == have)
            {
                outShape[i] = have;
                strides[i] = Strides[i - lead];
            }
            else if (have == 1)
            {
                outShape[i] = want;
                strides[i] = 0;
            }
            else throw new ArgumentException($"cannot expand {Describe()} to {ShapeString(shape)}: axis {i - lead} has size {have}");
        }
        return View(outShape, strides, Offset);
    }

    public Tensor BroadcastTo(params int[] shape) => Expand(shape);

    /// <summary>Removes <paramref name="axis"/>, which must have size 1.</summary>
    public Tensor Squeeze(int axis)
    {
        int a = NormalizeAxis(axis);
        if (Shape[a] != 1) throw new ArgumentException($"squeeze {Describe()}: axis {a} has size {Shape[a]}, not 1");
        var shape = Shape.Where((_, i) => i != a).ToArray();
        return Reshape(shape);
    }

    /// <summary>Removes every axis of size 1.</summary>
    public Tensor Squeeze() => Reshape(Shape.Where(d => d != 1).ToArray());

    /// <summary>Inserts an axis of size 1 before position <paramref name="axis"/> (axis may equal Rank).</summary>
    public Tensor Unsqueeze(int axis)
    {
        int a = axis < 0 ? axis + Rank + 1 : axis;
        if (a < 0 || a > Rank) throw new ArgumentOutOfRangeException(nameof(axis), axis, $"unsqueeze {Describe()}");
        var shape = new List<int>(Shape);
        shape.Insert(a, 1);
        return Reshape(shape.ToArray());
    }

    /// <summary>This tensor if contiguous, else a contiguous copy (recorded as Copy for autograd).</summary>
    public Tensor Contiguous() => IsContiguous ? this : Record(ContiguousCopy(), Op.Copy, null, [this]);

    /// <summary>A new contiguous tensor with the same values (always copies, no graph record).</summary>
    internal Tensor ContiguousCopy()
    {
        var t = EmptyLike();
        Backend.Execute(Op.Copy, [this], [t], null);
        return t;
    }

    /// <summary>A copy that owns its storage, recorded for autograd (torch.clone).</summary>
    public Tensor Clone() => Record(ContiguousCopy(), Op.Copy, null, [this]);

    /// <summary>Copies <paramref name="src"/> (broadcast to this shape) into this tensor in place; no graph record.</summary>
    public Tensor CopyFrom_(Tensor src)
    {
        if (src.Device != Device) src = src.To(Device);
        Backend.Execute(Op.Copy, [src.ExpandUnrecorded(Shape)], [this], null);
        return this;
    }

    /// <summary>Concatenates along <paramref name="axis"/>; all other sizes must match.</summary>
    public static Tensor Cat(Tensor[] tensors, int axis = 0)
    {
        if (tensors.Length == 0) throw new ArgumentException("cat: no tensors");
        var first = tensors[0];
        int a = first.NormalizeAxis(axis);
        int total = 0;
        foreach (var t in tensors)
        {
            if (t.Rank != first.Rank || t.DType != first.DType || t.Device != first.Device)
                throw new ArgumentException($"cat: {t.Describe()} does not match {first.Describe()}");
            for (int i = 0; i < t.Rank; i++)
                if (i != a && t.Shape[i] != first.Shape[i])
                    throw new ArgumentException($"cat along axis {a}: shapes {ShapeString(first.Shape)} and {ShapeString(t.Shape)} differ on axis {i}");
            total += t.Shape[a];
        }
        var shape = (int[])first.Shape.Clone();
        shape[a] = total;
        var result = first.EmptyLike(shape);
        int start = 0;
        foreach (var t in tensors)
        {
            var dst = result.View(t.Shape, result.Strides, result.Offset + start * result.Strides[a]);
            if (t.Numel > 0) result.Backend.Execute(Op.Copy, [t], [dst], null);
            start += t.Shape[a];
        }
        return Record(result, Op.Cat, new CatAttrs(a), tensors);
    }

    /// <summary>Stacks equal-shaped tensors along a new axis.</summary>
    public static Tensor Stack(Tensor[] tensors, int axis = 0) => Cat(tensors.Select(t => t.Unsqueeze(axis)).ToArray(), axis);

    /// <summary>Splits into pieces of <paramref name="size"/> along <paramref name="axis"/> (the last may be smaller).</summary>
    public Tensor[] Split(int size, int axis = 0)
    {
        if (size <= 0) throw new ArgumentOutOfRangeException(nameof(size), size, "split size must be positive");
        int a = NormalizeAxis(axis);
        var parts = new List<Tensor>();
        for (int s = 0; s < Shape[a]; s += size) parts.Add(Narrow(a, s, Math.Min(size, Shape[a] - s)));
        return parts.ToArray();
    }

    /// <summary>Splits into pieces of the given sizes along <paramref name="axis"/>.</summary>
    public Tensor[] Split(int[] sizes, int axis = 0)
    {
        int a = NormalizeAxis(axis);
        if (sizes.Sum() != Shape[a]) throw new ArgumentException($"split {Describe()}: sizes {ShapeString(sizes)} do not sum to {Shape[a]}");
        var parts = new Tensor[sizes.Length];
        int s = 0;
        for (int i = 0; i < sizes.Length; i++)
        {
            parts[i] = Narrow(a, s, sizes[i]);
            s += sizes[i];
        }
        return parts;
    }

    /// <summary>Splits into <paramref name="chunks"/> nearly equal pieces along <paramref name="axis"/>.</summary>
    public Tensor[] Chunk(int chunks, int axis = 0) => Split((Shape[NormalizeAxis(axis)] + chunks - 1) / chunks, axis);
}
