namespace ManagedTensor;

/// <summary>
/// Matmul and the neural-network ops. The front end hands backends contiguous inputs for these ops
/// (a copy is made only when an input is a non-contiguous view), except MatMul, whose backends take
/// transposed operands directly. Backward ops (LayerNormBackward, ...) are ops too; autograd calls them.
/// </summary>
public sealed partial class Tensor
{
    /// <summary>An empty placeholder for an absent optional input (bias, weight).</summary>
    internal Tensor None() => Empty([0], DType, Device);

    private Tensor Dense() => IsContiguous ? this : ContiguousCopy();

    internal void CheckFloat(string op)
    {
        if (!DType.IsFloat()) throw new NotSupportedException($"{op} needs a floating-point tensor, got {Describe()}");
    }

    internal static void CheckShape(Tensor t, int[] expected, string op, string what)
    {
        if (!t.Shape.AsSpan().SequenceEqual(expected))
            throw new ArgumentException($"{op}: {what} has shape {ShapeString(t.Shape)}, expected {ShapeString(expected)}");
    }

    // ---- matmul ----

    /// <summary>
    /// Matrix product with PyTorch's rules: 1-D operands are promoted (and the added axis removed),
    /// batch axes broadcast. (..., M, K) @ (..., K, N) -> (..., M, N).
    /// </summary>
    public Tensor MatMul(Tensor other)
    {
        // Autocast: 16-bit operands and a 16-bit product (float32 accumulation in the kernels), as torch.autocast (Autocast.cs).
        if (Autocast.Target(DType, other.DType) is { } low && (DType != low || other.DType != low)) return CastInStorageOrder(this, low).MatMul(CastInStorageOrder(other, low));
        CheckSameDeviceAndType(other, Op.MatMul);
        if (Rank == 0 || other.Rank == 0) throw new ArgumentException($"matmul: scalars not allowed: {Describe()} @ {other.Describe()}");
        if (Rank == 1) return Unsqueeze(0).MatMul(other).Squeeze(-2);
        if (other.Rank == 1) return MatMul(other.Unsqueeze(1)).Squeeze(-1);
        int m = Shape[^2], k = Shape[^1], k2 = other.Shape[^2], n = other.Shape[^1];
        if (k != k2) throw new ArgumentException($"matmul: inner sizes differ: {Describe()} @ {other.Describe()} ({k} vs {k2})");
        var batch = BroadcastShapes(Shape[..^2], other.Shape[..^2]);
        var outShape = batch.Append(m).Append(n).ToArray();
        var output = Empty(outShape, DType, Device);
        if (output.Numel > 0)
        {
            if (k == 0) output.Fill_(0);
            else Backend.Execute(Op.MatMul, [ExpandUnrecorded(batch.Append(m).Append(k).ToArray()), other.ExpandUnrecorded(batch.Append(k).Append(n).ToArray())], [output], null);
        }
        return Record(output, Op.MatMul, null, [this, other]);
    }

    /// <summary>
    /// <paramref name="t"/> cast to <paramref name="dtype"/>, a transposed matrix (a Linear's W.MT) cast in its storage order
    /// and transposed back: its gradient then comes back in W's own layout, so autograd hands W its float32 gradient
    /// without the (out, in) copy a contiguous (in, out) cast would need; the cast copy itself is the same size either way.
    /// </summary>
    private static Tensor CastInStorageOrder(Tensor t, DType dtype) =>
        t.DType != dtype && t.Rank == 2 && !t.IsContiguous && t.MT.IsContiguous ? t.MT.To(dtype).MT : t.To(dtype);

    // ---- softmax family ----

    private Tensor LastAxisOp(Op op, int axis)
    {
        if (Autocast.Fp32(this) is var wide && wide != this) return wide.LastAxisOp(op, axis); // a float32-list op (Autocast.cs)
        CheckFloat(op.ToString());
        int a = NormalizeAxis(axis);
        if (a != Rank - 1) return Transpose(a, -1).LastAxisOp(op, -1).Transpose(a, -1);
        var output = EmptyLike();
        if (Numel > 0) Backend.Execute(op, [Dense()], [output], null);
        return Record(output, op, null, [this]);
    }

    public Tensor Softmax(int axis = -1) => LastAxisOp(Op.Softmax, axis);
    public Tensor LogSoftmax(int axis = -1) => LastAxisOp(Op.LogSoftmax, axis);

    // ---- normalization over the last axis ----

    /// <summary>Layer norm over the last axis: (x - mean) / sqrt(var + eps) * weight + bias (biased variance).</summary>
    public Tensor LayerNorm(Tensor? weight, Tensor? bias, double eps = 1e-5)
    {
        if (Autocast.Fp32(this) is var wide && wide != this) return wide.LayerNorm(weight, bias, eps); // a float32-list op (Autocast.cs)
        CheckFloat("LayerNorm");
        int c = Shape[^1], rows = Numel / Math.Max(c, 1);
        if (weight is not null) CheckShape(weight, [c], "LayerNorm", "weight");
        if (bias is not null) CheckShape(bias, [c], "LayerNorm", "bias");
        var w = weight ?? None();
        var b = bias ?? None();
        var y = EmptyLike();
        var mean = Empty([rows], DType, Device);
        var rstd = Empty([rows], DType, Device);
        var attrs = new NormAttrs(eps);
        Backend.Execute(Op.LayerNorm, [Dense(), w.Dense(), b.Dense()], [y, mean, rstd], attrs);
        return Record(y, Op.LayerNorm, attrs, [this, w, b], mean, rstd);
    }

    /// <summary>dx, dweight, dbias of <see cref="LayerNorm"/> (dweight/dbias empty when weight/bias were absent).</summary>
    public static (Tensor Dx, Tensor Dweight, Tensor Dbias) LayerNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd, NormAttrs attrs)
    {
        var dx = x.EmptyLike();
        var dw = weight.Numel > 0 ? weight.EmptyLike() : x.None();
        var db = weight.Numel > 0 ? weight.EmptyLike() : x.None();
        x.Backend.Execute(Op.LayerNormBackward, [dy.Dense(), x.Dense(), weight.Dense(), mean, rstd], [dx, dw, db], attrs);
        return (dx, dw, db);
    }

    /// <summary>RMS norm over the last axis: x / sqrt(mean(x^2) + eps) * weight (declared in Ops/NormOps.cs).</summary>
    public Tensor RmsNorm(Tensor? weight, double eps = 1e-5) => // a float32-list op under autocast (Autocast.cs)
        Autocast.Fp32(this) is var x && x != this ? x.RmsNorm(weight, eps) : Apply(Op.RmsNorm, new NormAttrs(eps), this, weight ?? None())[0];

    public static (Tensor Dx, Tensor Dweight) RmsNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor rstd, NormAttrs attrs)
    {
        var dx = x.EmptyLike();
        var dw = weight.Numel > 0 ? weight.EmptyLike() : x.None();
        x.Backend.Execute(Op.RmsNormBackward, [dy.Dense(), x.Dense(), weight.Dense(), rstd], [dx, dw], attrs);
        return (dx, dw);
    }

    // ---- indexing ----

    private static void CheckIndex(Tensor idx, string op)
    {
        if (idx.DType is not (DType.I32 or DType.I64)) throw new ArgumentException($"{op}: index must be I32 or I64, got {idx.Describe()}");
    }

    /// <summary>Entries idx[0..n) along <paramref name="axis"/>: out.shape[axis] = n.</summary>
    public Tensor IndexSelect(int axis, Tensor idx)
    {
        CheckIndex(idx, "IndexSelect");
        if (idx.Rank != 1) throw new ArgumentException($"IndexSelect: index must be 1-D, got {idx.Describe()}");
        int a = NormalizeAxis(axis);
        var shape = (int[])Shape.Clone();
        shape[a] = idx.Numel;
        var output = Empty(shape, DType, Device);
        var attrs = new AxisAttrs(a);
        if (output.Numel > 0) Backend.Execute(Op.IndexSelect, [Dense(), idx.Dense()], [output], attrs);
        return Record(output, Op.IndexSelect, attrs, [this, idx]);
    }

    /// <summary>In place, unrecorded: this[.., idx[i], ..] += src[.., i, ..] along <paramref name="axis"/>.</summary>
    public Tensor IndexAdd_(int axis, Tensor idx, Tensor src)
    {
        CheckIndex(idx, "IndexAdd");
        if (!IsContiguous) throw new InvalidOperationException($"IndexAdd_ needs a contiguous destination, got {Describe()}");
        Backend.Execute(Op.IndexAdd, [idx.Dense(), src.Dense()], [this], new AxisAttrs(NormalizeAxis(axis)));
        return this;
    }

    /// <summary>Rows of an embedding table: weight (V, C), ids of any shape -> (ids..., C).</summary>
    public static Tensor Embedding(Tensor weight, Tensor ids)
    {
        if (weight.Rank != 2) throw new ArgumentException($"Embedding: weight must be (vocab, dim), got {weight.Describe()}");
        return weight.IndexSelect(0, ids.Reshape(-1)).Reshape(ids.Shape.Append(weight.Shape[1]).ToArray());
    }

    /// <summary>torch.gather: out[..., j, ...] = this[..., idx[..., j, ...], ...] along <paramref name="axis"/>.</summary>
    public Tensor Gather(int axis, Tensor idx)
    {
        CheckIndex(idx, "Gather");
        if (idx.Rank != Rank) throw new ArgumentException($"Gather: index {idx.Describe()} must have the rank of {Describe()}");
        var output = Empty(idx.Shape, DType, Device);
        var attrs = new AxisAttrs(NormalizeAxis(axis));
        if (output.Numel > 0) Backend.Execute(Op.Gather, [Dense(), idx.Dense()], [output], attrs);
        return Record(output, Op.Gather, attrs, [this, idx]);
    }

    /// <summary>In place, unrecorded (torch.scatter_add_): this[..., idx[..., j, ...], ...] += src[..., j, ...].</summary>
    public Tensor ScatterAdd_(int axis, Tensor idx, Tensor src)
    {
        CheckIndex(idx, "ScatterAdd");
        if (!IsContiguous) throw new InvalidOperationException($"ScatterAdd_ needs a contiguous destination, got {Describe()}");
        CheckShape(src, idx.Shape, "ScatterAdd", "src");
        Backend.Execute(Op.ScatterAdd, [idx.Dense(), src.Dense()], [this], new AxisAttrs(NormalizeAxis(axis)));
        return this;
    }

    // ---- fused loss ----

    /// <summary>
    /// Mean cross-entropy of logits (..., C) against integer targets (...), skipping targets equal to
    /// <paramref name="ignoreIndex"/> (as F.cross_entropy). Fused: log-softmax is never materialized.
    /// </summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex = -100)
    {
        logits = Autocast.Fp32(logits); // a float32-list op under autocast (Autocast.cs): 16-bit logits are cast up
        logits.CheckFloat("CrossEntropy");
        CheckIndex(targets, "CrossEntropy");
        int c = logits.Shape[^1];
        if (!logits.Shape[..^1].AsSpan().SequenceEqual(targets.Shape))
            throw new ArgumentException($"CrossEntropy: logits {logits.Describe()} and targets {targets.Describe()} disagree (expected targets of shape {ShapeString(logits.Shape[..^1])})");
        var l2 = logits.Reshape(-1, c);
        var t1 = targets.Reshape(-1);
        var loss = Empty([], logits.DType, logits.Device);
        var lse = Empty([l2.Shape[0]], logits.DType, logits.Device);
        var attrs = new CrossEntropyAttrs(ignoreIndex);
        logits.Backend.Execute(Op.CrossEntropy, [l2.Dense(), t1.Dense()], [loss, lse], attrs);
        return Record(loss, Op.CrossEntropy, attrs, [l2, t1], lse);
    }

    public static Tensor CrossEntropyBackward(Tensor dloss, Tensor logits, Tensor targets, Tensor lse, CrossEntropyAttrs attrs)
    {
        var dlogits = logits.EmptyLike();
        logits.Backend.Execute(Op.CrossEntropyBackward, [dloss.Dense(), logits.Dense(), targets.Dense(), lse], [dlogits], attrs);
        return dlogits;
    }

    // ---- convolution and pooling (NCHW) ----

    private static int ConvOut(int size, int kernel, int stride, int pad, int dilation, string what)
    {
        int o = (size + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
        if (o <= 0) throw new ArgumentException($"{what}: input size {size} is too small for kernel {kernel} (stride {stride}, padding {pad}, dilation {dilation})");
        return o;
    }

    /// <summary>2-D convolution (cross-correlation, as PyTorch): x (N, C, H, W), w (O, C/groups, KH, KW), bias (O).</summary>
    public static Tensor Conv2d(Tensor x, Tensor w, Tensor? bias, int stride = 1, int padding = 0, int dilation = 1, int groups = 1)
        => Conv2d(x, w, bias, new Conv2dAttrs(stride, stride, padding, padding, dilation, dilation, groups));

    public static Tensor Conv2d(Tensor x, Tensor w, Tensor? bias, Conv2dAttrs a)
    {
        var b = bias ?? x.None();
        var y = Empty(Conv2dShape(x, w, bias, a, "Conv2d"), x.DType, x.Device);
        x.Backend.Execute(Op.Conv2d, [x.Dense(), w.Dense(), b.Dense()], [y], a);
        return Record(y, Op.Conv2d, a, [x, w, b]);
    }

    /// <summary>Conv2d's output shape (N, O, OH, OW), after checking its operands (<paramref name="op"/> names the op in errors).</summary>
    internal static int[] Conv2dShape(Tensor x, Tensor w, Tensor? bias, Conv2dAttrs a, string op)
    {
        x.CheckFloat(op);
        x.CheckSameDeviceAndType(w, Op.Conv2d);
        if (x.Rank != 4 || w.Rank != 4) throw new ArgumentException($"{op}: x {x.Describe()} and weight {w.Describe()} must be 4-D (NCHW, OIHW)");
        if (a.Groups <= 0 || x.Shape[1] % a.Groups != 0 || w.Shape[0] % a.Groups != 0 || w.Shape[1] * a.Groups != x.Shape[1])
            throw new ArgumentException($"{op}: x {x.Describe()} and weight {w.Describe()} do not agree with groups = {a.Groups}");
        if (bias is not null) CheckShape(bias, [w.Shape[0]], op, "bias");
        if (a.StrideH <= 0 || a.StrideW <= 0 || a.PadH < 0 || a.PadW < 0 || a.DilationH <= 0 || a.DilationW <= 0)
            throw new ArgumentException($"{op}: invalid stride/padding/dilation {a}");
        int oh = ConvOut(x.Shape[2], w.Shape[2], a.StrideH, a.PadH, a.DilationH, op);
        int ow = ConvOut(x.Shape[3], w.Shape[3], a.StrideW, a.PadW, a.DilationW, op);
        return [x.Shape[0], w.Shape[0], oh, ow];
    }

    public static Tensor Conv2dBackwardInput(Tensor dy, Tensor w, int[] xShape, Conv2dAttrs a)
    {
        var dx = Empty(xShape, dy.DType, dy.Device);
        dy.Backend.Execute(Op.Conv2dBackwardInput, [dy.Dense(), w.Dense()], [dx], a);
        return dx;
    }

    public static Tensor Conv2dBackwardWeight(Tensor dy, Tensor x, int[] wShape, Conv2dAttrs a)
    {
        var dw = Empty(wShape, dy.DType, dy.Device);
        dy.Backend.Execute(Op.Conv2dBackwardWeight, [dy.Dense(), x.Dense()], [dw], a);
        return dw;
    }

    private int[] PoolShape(Pool2dAttrs p, string op)
    {
        CheckFloat(op);
        if (Rank != 4) throw new ArgumentException($"{op}: input must be 4-D (N, C, H, W), got {Describe()}");
        if (p.KernelH <= 0 || p.KernelW <= 0 || p.StrideH <= 0 || p.StrideW <= 0 || p.PadH < 0 || p.PadW < 0 || 2 * p.PadH > p.KernelH || 2 * p.PadW > p.KernelW)
            throw new ArgumentException($"{op}: invalid kernel/stride/padding {p} (padding must be at most half the kernel)");
        return [Shape[0], Shape[1], ConvOut(Shape[2], p.KernelH, p.StrideH, p.PadH, 1, op), ConvOut(Shape[3], p.KernelW, p.StrideW, p.PadW, 1, op)];
    }

    public Tensor MaxPool2d(int kernel, int? stride = null, int padding = 0)
        => MaxPool2d(new Pool2dAttrs(kernel, kernel, stride ?? kernel, stride ?? kernel, padding, padding));

    public Tensor MaxPool2d(Pool2dAttrs p)
    {
        var shape = PoolShape(p, "MaxPool2d");
        var y = Empty(shape, DType, Device);
        var argmax = Empty(shape, DType.I32, Device);
        Backend.Execute(Op.MaxPool2d, [Dense()], [y, argmax], p);
        return Record(y, Op.MaxPool2d, p, [this], argmax);
    }

    public static Tensor MaxPool2dBackward(Tensor dy, Tensor argmax, int[] xShape, Pool2dAttrs p)
    {
        var dx = Empty(xShape, dy.DType, dy.Device);
        dy.Backend.Execute(Op.MaxPool2dBackward, [dy.Dense(), argmax], [dx], p);
        return dx;
    }

    public Tensor AvgPool2d(int kernel, int? stride = null, int padding = 0)
        => AvgPool2d(new Pool2dAttrs(kernel, kernel, stride ?? kernel, stride ?? kernel, padding, padding));

    public Tensor AvgPool2d(Pool2dAttrs p)
    {
        var y = Empty(PoolShape(p, "AvgPool2d"), DType, Device);
        Backend.Execute(Op.AvgPool2d, [Dense()], [y], p);
        return Record(y, Op.AvgPool2d, p, [this]);
    }

    public static Tensor AvgPool2dBackward(Tensor dy, int[] xShape, Pool2dAttrs p)
    {
        var dx = Empty(xShape, dy.DType, dy.Device);
        dy.Backend.Execute(Op.AvgPool2dBackward, [dy.Dense()], [dx], p);
        return dx;
    }

    /// <summary>Nearest-neighbour upsampling by an integer factor: (N, C, H, W) -> (N, C, H*s, W*s).</summary>
    public Tensor UpsampleNearest2d(int scale)
    {
        CheckFloat("UpsampleNearest2d");
        if (Rank != 4 || scale <= 0) throw new ArgumentException($"UpsampleNearest2d: need a 4-D input and a positive scale, got {Describe()}, scale {scale}");
        var attrs = new ScaleAttrs(scale);
        var y = Empty([Shape[0], Shape[1], Shape[2] * scale, Shape[3] * scale], DType, Device);
        Backend.Execute(Op.UpsampleNearest2d, [Dense()], [y], attrs);
        return Record(y, Op.UpsampleNearest2d, attrs, [this]);
    }

    public static Tensor UpsampleNearest2dBackward(Tensor dy, int scale)
    {
        var dx = Empty([dy.Shape[0], dy.Shape[1], dy.Shape[2] / scale, dy.Shape[3] / scale], dy.DType, dy.Device);
        dy.Backend.Execute(Op.UpsampleNearest2dBackward, [dy.Dense()], [dx], new ScaleAttrs(scale));
        return dx;
    }

    // ---- optimizer ----

    /// <summary>One fused AdamW update of param, m and v in place from grad (no graph record).</summary>
    public static void AdamWStep_(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWAttrs attrs)
    {
        foreach (var t in new[] { param, grad, m, v })
            if (!t.IsContiguous || !t.Shape.AsSpan().SequenceEqual(param.Shape) || t.DType != param.DType)
                throw new ArgumentException($"AdamWStep: {t.Describe()} must be contiguous and match param {param.Describe()}");
        param.Backend.Execute(Op.AdamWStep, [grad], [param, m, v], attrs);
    }
}
