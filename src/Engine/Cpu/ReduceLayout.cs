namespace ManagedTensor.Cpu;

/// <summary>
/// A reduction seen as Outputs independent reductions of Count elements each. The axes of x are split
/// into kept axes (which index the contiguous output, row-major) and reduced axes; each group has its
/// size-1 axes dropped and adjacent axes merged where x's strides allow. Each output's elements are then
/// visited as rows: runs of <see cref="RowLength"/> elements <see cref="RowStride"/> apart, one row per
/// index of the remaining (outer) reduced axes.
/// </summary>
internal sealed class ReduceLayout
{
    /// <summary>The checks every backend makes of a reduction's operands before running it.</summary>
    public static void CheckOperands(Op op, Tensor x, Tensor y, ReduceAttrs a)
    {
        var expected = (int[])x.Shape.Clone();
        foreach (int axis in a.Axes) expected[axis] = 1;
        if (y.Numel != expected.Aggregate(1, (p, s) => p * s) || !y.IsContiguous)
            throw new ArgumentException($"{op} of {x.Describe()} over axes {Tensor.ShapeString(a.Axes)}: output {y.Describe()} must be contiguous with shape {Tensor.ShapeString(expected)}");
        if (op == Op.ArgMax && a.Axes.Length != 1)
            throw new ArgumentException($"ArgMax of {x.Describe()}: exactly one axis, got {Tensor.ShapeString(a.Axes)}");
    }

    private readonly int[] _keptShape, _keptStrides;   // merged kept axes (x strides)
    private readonly int[] _outerShape, _outerStrides; // reduced axes outside the row axis

    public ReduceLayout(Tensor x, int[] axes)
    {
        var kept = new List<(int Size, int Stride)>();
        var reduced = new List<(int Size, int Stride)>();
        for (int d = 0; d < x.Rank; d++)
            (Array.IndexOf(axes, d) >= 0 ? reduced : kept).Add((x.Shape[d], x.Strides[d]));
        var k = Merge(kept);
        var r = Merge(reduced);
        _keptShape = k.Select(a => a.Size).ToArray();
        _keptStrides = k.Select(a => a.Stride).ToArray();
        Outputs = _keptShape.Aggregate(1, (p, s) => p * s);
        Count = r.Aggregate(1, (p, a) => p * a.Size);
        RowLength = r.Count == 0 ? 1 : r[^1].Size;
        RowStride = r.Count == 0 ? 1 : r[^1].Stride;
        _outerShape = r.Take(Math.Max(r.Count - 1, 0)).Select(a => a.Size).ToArray();
        _outerStrides = r.Take(Math.Max(r.Count - 1, 0)).Select(a => a.Stride).ToArray();
        XOffset = x.Offset;
    }

    /// <summary>Number of output elements.</summary>
    public int Outputs { get; }

    /// <summary>Number of elements reduced into each output.</summary>
    public int Count { get; }

    public int RowLength { get; }
    public int RowStride { get; }
    public int XOffset { get; }

    /// <summary>Merged kept axes: the innermost one's size and x stride (1 and 0 when nothing is kept).</summary>
    public int KeptInnerSize => _keptShape.Length == 0 ? 1 : _keptShape[^1];
    public int KeptInnerStride => _keptStrides.Length == 0 ? 0 : _keptStrides[^1];

    /// <summary>Whether each output's elements are one contiguous run of x.</summary>
    public bool ContiguousRows => _outerShape.Length == 0 && (RowStride == 1 || RowLength == 1);

    /// <summary>Offset in x of the first element reduced into output <paramref name="o"/>.</summary>
    public int BaseOffset(int o)
    {
        int off = XOffset;
        for (int d = _keptShape.Length - 1; d >= 0; d--)
        {
            off += o % _keptShape[d] * _keptStrides[d];
            o /= _keptShape[d];
        }
        return off;
    }

    /// <summary>Calls <paramref name="visitor"/> once per row of output element at <paramref name="baseOffset"/>.</summary>
    public void VisitRows<TV>(int baseOffset, ref TV visitor) where TV : struct, IRowVisitor
    {
        if (_outerShape.Length == 0)
        {
            visitor.Row(baseOffset, RowLength, RowStride);
            return;
        }
        Span<int> index = stackalloc int[_outerShape.Length];
        int off = baseOffset;
        while (true)
        {
            visitor.Row(off, RowLength, RowStride);
            int d = _outerShape.Length - 1;
            for (; d >= 0; d--)
            {
                off += _outerStrides[d];
                if (++index[d] < _outerShape[d]) break;
                off -= _outerStrides[d] * _outerShape[d];
                index[d] = 0;
            }
            if (d < 0) return;
        }
    }

    /// <summary>Drops size-1 axes and merges an axis into the next inner one when stride[d] == stride[d+1] * size[d+1].</summary>
    private static List<(int Size, int Stride)> Merge(List<(int Size, int Stride)> axes)
    {
        var result = new List<(int Size, int Stride)>();
        for (int i = axes.Count - 1; i >= 0; i--)
        {
            var a = axes[i];
            if (a.Size == 1) continue;
            if (result.Count > 0 && a.Stride == result[0].Stride * result[0].Size)
                result[0] = (result[0].Size * a.Size, result[0].Stride);
            else result.Insert(0, a);
        }
        if (axes.Any(a => a.Size == 0)) return [(0, 1)];
        return result;
    }
}

/// <summary>Receives the rows of one output's reduction: n elements of x from offset, stride apart.</summary>
internal interface IRowVisitor
{
    void Row(int offset, int n, int stride);
}
