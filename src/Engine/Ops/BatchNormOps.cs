using ManagedTensor.Cpu;

namespace ManagedTensor;

/// <summary>
/// Batch norm over (N, H, W) per channel with the batch's own statistics (training mode; eval mode is plain
/// arithmetic with running statistics, in Nn.BatchNorm2d):
///   mean_c = E[x], var_c = E[(x - mean_c)^2] (biased), invstd_c = 1 / sqrt(var_c + eps),
///   y = (x - mean_c) * invstd_c * weight_c + bias_c.
/// Outputs y and the per-channel mean and invstd, which the backward reuses. With xhat = (x - mean) * invstd
/// and M = N*H*W elements per channel:
///   dbias = sum g,  dweight = sum g * xhat,  dx = weight * invstd / M * (M g - dbias - xhat * dweight),
/// computed by the op BatchNorm2dBackward (dy, x, weight?, mean, invstd -> dx, dweight, dbias) in one pass per
/// channel for the sums and one for dx, instead of a dozen full-size elementwise ops and reductions.
/// Kernels for both ops: CPU (src/Engine/Cpu/CpuBatchNorm.cs) and GPU (src/Engine/Gpu/Kernels/BatchNormKernels.cs),
/// F32/F64; elsewhere the composites below.
/// </summary>
internal static class BatchNormOps
{
    private static Op _op, _backward;

    /// <summary>The op's id. Assigned when the registry registers the op (a static initializer calling Declare would
    /// run inside that registration whenever this class is touched first, and read the id before it is set).</summary>
    public static Op BatchNorm2d => OpRegistry.Id(ref _op);

    /// <summary>The backward op's id (see <see cref="BatchNorm2d"/>).</summary>
    public static Op BatchNorm2dBackward => OpRegistry.Id(ref _backward);

    public static void Register()
    {
        _op = OpRegistry.Declare("BatchNorm2d");
        OpRegistry.Define(new OpDef(_op, "BatchNorm2d")
        {
            Inputs = ["x", "weight?", "bias?"],
            Outputs = ["y", "mean", "invstd"],
            Attrs = typeof(NormAttrs),
            Summary = "y = (x - mean) / sqrt(var + eps) * weight + bias per channel of (N, C, H, W), batch statistics",
            Shapes = (i, a) => Shapes("BatchNorm2d", i, a),
            Backward = Backward,
            Fallback = Composite,
        });
        CpuBackend.Instance.Kernels.Add(_op, (i, o, a) => CpuBatchNorm.Forward(i[0], i[1], i[2], o[0], o[1], o[2], ((NormAttrs)a!).Eps),
            (i, a) => i[0].DType is DType.F32 or DType.F64);

        _backward = OpRegistry.Declare("BatchNorm2dBackward");
        OpRegistry.Define(new OpDef(_backward, "BatchNorm2dBackward")
        {
            Inputs = ["dy", "x", "weight?", "mean", "invstd"],
            Outputs = ["dx", "dweight", "dbias"],
            Summary = "BatchNorm2d's gradients from dy and the forward's saved mean and invstd",
            Shapes = (i, a) => BackwardShapes("BatchNorm2dBackward", i),
            Fallback = BackwardComposite,
        });
        CpuBackend.Instance.Kernels.Add(_backward, (i, o, a) => CpuBatchNorm.Backward(i[0], i[1], i[2], i[3], i[4], o[0], o[1], o[2]),
            (i, a) => i[0].DType is DType.F32 or DType.F64);
    }

    /// <summary>The output rule of BatchNorm2d and of the ops built on it (<paramref name="op"/> names the op in errors): x (N, C, H, W), weight? (C), bias? (C).</summary>
    internal static TensorSpec[] Shapes(string op, Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor x = inputs[0], w = inputs[1], b = inputs[2];
        if (!x.DType.IsFloat()) throw new NotSupportedException($"{op} needs a floating-point tensor, got {x.Describe()}");
        if (x.Rank != 4) throw new ArgumentException($"{op}: input must be 4-D (N, C, H, W), got {x.Describe()}");
        int c = x.Shape[1];
        if (x.Numel / Math.Max(c, 1) < 1) throw new ArgumentException($"{op}: input {x.Describe()} has no elements per channel");
        foreach (var (t, name) in new[] { (w, "weight"), (b, "bias") })
        {
            if (t.Numel > 0 && (t.Rank != 1 || t.Shape[0] != c))
                throw new ArgumentException($"{op}: {name} has shape {Tensor.ShapeString(t.Shape)}, expected [{c}] (the channels of {x.Describe()})");
            if (t.Numel > 0 && t.DType != x.DType)
                throw new ArgumentException($"{op}: {name} {t.Describe()} must have the dtype of {x.Describe()}");
        }
        if (attrs is not NormAttrs) throw new ArgumentException($"{op} takes NormAttrs(eps)");
        return [new(x.Shape, x.DType), new([c], x.DType), new([c], x.DType)];
    }

    internal static Tensor PerChannel(Tensor v) => v.Reshape(1, v.Shape[0], 1, 1); // (C) -> (1, C, 1, 1)

    private static Tensor?[] Backward(OpNode node, Tensor y, Tensor g)
    {
        Tensor w = node.Inputs[1], b = node.Inputs[2];
        var r = Tensor.Apply(BatchNorm2dBackward, null, g, node.Inputs[0], w, node.Saved[0], node.Saved[1]);
        return [r[0], w.Numel > 0 ? r[1] : null, b.Numel > 0 ? r[2] : null];
    }

    /// <summary>The output rule of BatchNorm2dBackward (and the ops built on it): dy and x (N, C, H, W), weight? (C), mean (C), invstd (C).</summary>
    internal static TensorSpec[] BackwardShapes(string op, Tensor[] inputs)
    {
        Tensor dy = inputs[0], x = inputs[1], w = inputs[2], mean = inputs[3], invstd = inputs[4];
        if (x.Rank != 4) throw new ArgumentException($"{op}: x must be 4-D (N, C, H, W), got {x.Describe()}");
        if (!dy.Shape.AsSpan().SequenceEqual(x.Shape) || dy.DType != x.DType)
            throw new ArgumentException($"{op}: dy {dy.Describe()} must have the shape and dtype of x {x.Describe()}");
        int c = x.Shape[1];
        foreach (var (t, name) in new[] { (mean, "mean"), (invstd, "invstd"), (w, "weight") })
            if ((name != "weight" || t.Numel > 0) && (t.Rank != 1 || t.Shape[0] != c || t.DType != x.DType)) // the weight is optional
                throw new ArgumentException($"{op}: {name} {t.Describe()} must be [{c}] of x's dtype {x.DType}");
        return [new(x.Shape, x.DType), new([c], x.DType), new([c], x.DType)];
    }

    /// <summary>The gradients in tensor ops (what runs where a backend has no BatchNorm2dBackward kernel).</summary>
    private static Tensor[] BackwardComposite(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor g = inputs[0], x = inputs[1], w = inputs[2], mean = inputs[3], invstd = inputs[4];
        int[] axes = [0, 2, 3];
        double m = x.Numel / x.Shape[1];
        var xhat = (x - PerChannel(mean)) * PerChannel(invstd);          // (N, C, H, W)
        var dbias = g.Sum(axes);                                           // (C)
        var dweight = (g * xhat).Sum(axes);                                // (C)
        var scale = w.Numel > 0 ? w * invstd : invstd;                     // (C)
        var dx = PerChannel(scale / m) * (g * m - PerChannel(dbias) - xhat * PerChannel(dweight));
        return [dx, dweight, dbias];
    }

    private static Tensor[] Composite(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor x = inputs[0], w = inputs[1], b = inputs[2];
        int[] axes = [0, 2, 3];
        var mean = x.Mean(axes, keepDim: true);                                          // (1, C, 1, 1)
        var invstd = x.Var(axes, keepDim: true, correction: 0).AddScalar(((NormAttrs)attrs!).Eps).Rsqrt();
        var y = (x - mean) * invstd;
        if (w.Numel > 0) y *= PerChannel(w);
        if (b.Numel > 0) y += PerChannel(b);
        int c = x.Shape[1];
        return [y, mean.Reshape(c), invstd.Reshape(c)];
    }
}

public sealed partial class Tensor
{
    /// <summary>
    /// Batch norm with this batch's statistics over (N, H, W): returns y and the per-channel mean and
    /// 1/sqrt(var + eps) (biased variance), as torch.nn.functional.batch_norm in training mode computes them.
    /// </summary>
    public (Tensor Y, Tensor Mean, Tensor InvStd) BatchNorm2d(Tensor? weight, Tensor? bias, double eps = 1e-5)
    {
        var r = Apply(BatchNormOps.BatchNorm2d, new NormAttrs(eps), this, weight ?? None(), bias ?? None());
        return (r[0], r[1], r[2]);
    }
}
