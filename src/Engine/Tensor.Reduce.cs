namespace ManagedTensor;

/// <summary>Reductions over any set of axes, with or without keepdim.</summary>
public sealed partial class Tensor
{
    /// <summary>Sorted, distinct, non-negative axes; null or empty means all axes.</summary>
    internal int[] NormalizeAxes(int[]? axes)
    {
        if (axes is null || axes.Length == 0) return Enumerable.Range(0, Rank).ToArray();
        var result = axes.Select(NormalizeAxis).Distinct().Order().ToArray();
        if (result.Length != axes.Length) throw new ArgumentException($"reduce {Describe()}: repeated axis in {ShapeString(axes)}");
        return result;
    }

    internal int[] KeepDimShape(int[] axes)
    {
        var shape = (int[])Shape.Clone();
        foreach (int a in axes) shape[a] = 1;
        return shape;
    }

    internal int[] DroppedShape(int[] axes) => Shape.Where((_, i) => Array.IndexOf(axes, i) < 0).ToArray();

    private Tensor Reduce(Op op, int[]? axes, bool keepDim, int correction = 1)
    {
        var ax = NormalizeAxes(axes);
        bool isFloatOp = op is Op.Mean or Op.Var;
        if (isFloatOp && !DType.IsFloat()) throw new NotSupportedException($"{op} needs a floating-point tensor, got {Describe()}");
        foreach (int a in ax)
            if (Shape[a] == 0 && op is Op.Max or Op.Min or Op.ArgMax)
                throw new ArgumentException($"{op} of {Describe()}: axis {a} is empty");
        var attrs = new ReduceAttrs(ax, keepDim, correction);
        var output = Empty(KeepDimShape(ax), op == Op.ArgMax ? DType.I64 : DType, Device);
        Backend.Execute(op, [this], [output], attrs);
        var result = keepDim ? output : output.ViewUnrecorded(DroppedShape(ax));
        return op == Op.ArgMax ? result : Record(result, op, attrs, [this]);
    }

    /// <summary>Sum over <paramref name="axes"/> (all axes when none are given).</summary>
    public Tensor Sum(int[]? axes = null, bool keepDim = false) => Reduce(Op.Sum, axes, keepDim);
    public Tensor Sum(int axis, bool keepDim = false) => Reduce(Op.Sum, [axis], keepDim);
    public Tensor Mean(int[]? axes = null, bool keepDim = false) => Reduce(Op.Mean, axes, keepDim);
    public Tensor Mean(int axis, bool keepDim = false) => Reduce(Op.Mean, [axis], keepDim);
    public Tensor Max(int[]? axes = null, bool keepDim = false) => Reduce(Op.Max, axes, keepDim);
    public Tensor Max(int axis, bool keepDim = false) => Reduce(Op.Max, [axis], keepDim);
    public Tensor Min(int[]? axes = null, bool keepDim = false) => Reduce(Op.Min, axes, keepDim);
    public Tensor Min(int axis, bool keepDim = false) => Reduce(Op.Min, [axis], keepDim);

    /// <summary>Variance with Bessel's correction by default (torch.var's default, correction = 1).</summary>
    public Tensor Var(int[]? axes = null, bool keepDim = false, int correction = 1) => Reduce(Op.Var, axes, keepDim, correction);
    public Tensor Var(int axis, bool keepDim = false, int correction = 1) => Reduce(Op.Var, [axis], keepDim, correction);

    /// <summary>Index (I64) of the first maximum along <paramref name="axis"/>.</summary>
    public Tensor ArgMax(int axis, bool keepDim = false) => Reduce(Op.ArgMax, [axis], keepDim);

    /// <summary>Sums this tensor down to <paramref name="shape"/>, undoing a broadcast (used by backward rules).</summary>
    public Tensor SumTo(int[] shape)
    {
        if (Shape.AsSpan().SequenceEqual(shape)) return this;
        int lead = Rank - shape.Length;
        if (lead < 0) throw new ArgumentException($"SumTo: {Describe()} cannot be summed to larger rank {ShapeString(shape)}");
        var axes = new List<int>();
        for (int i = 0; i < Rank; i++)
        {
            if (i < lead) axes.Add(i);
            else if (shape[i - lead] == 1 && Shape[i] != 1) axes.Add(i);
            else if (shape[i - lead] != Shape[i])
                throw new ArgumentException($"SumTo: {Describe()} is not a broadcast of {ShapeString(shape)}");
        }
        var summed = axes.Count > 0 ? Sum(axes.ToArray(), keepDim: true) : this;
        return summed.Reshape(shape);
    }
}
