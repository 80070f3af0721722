using ManagedTensor.Cpu;

namespace ManagedTensor;

/// <summary>GroupNorm's settings: the channels split into <paramref name="Groups"/> groups; eps inside the square root.</summary>
public sealed record GroupNormAttrs(int Groups, double Eps = 1e-5) : OpAttrs;

/// <summary>
/// Group norm (Wu and He 2018; torch.nn.functional.group_norm), the diffusion U-Net's normalization: x (N, C, *)
/// with C split into G groups of C/G channels; each (sample, group) is normalized over its M = C/G * prod(*) values:
///   mean = E[x], var = E[(x - mean)^2] (biased), invstd = 1 / sqrt(var + eps),
///   y = (x - mean) * invstd * weight_c + bias_c   (weight, bias per channel, optional).
/// Outputs y and the (N, G) mean and invstd, which the backward reuses. With xhat = (x - mean) * invstd and
/// gy = g * weight_c, per group:
///   dx = invstd / M * (M gy - sum gy - xhat * sum(gy xhat)),  dweight_c = sum_{n,*} g xhat,  dbias_c = sum_{n,*} g.
/// (Batch norm's formula, with the sums over a sample's group instead of the batch's channel.) The backward is the op
/// GroupNormBackward (dy, x, weight?, mean, invstd -> dx, dweight, dbias): on the CPU two SIMD passes per group instead
/// of a dozen full-size tensor ops. CPU kernels for F32/F64 (src/Engine/Cpu/CpuGroupNorm.cs); elsewhere the composites.
/// </summary>
internal static class GroupNormOps
{
    private static Op _op, _backward;

    /// <summary>The op's id, set when the registry registers the op (see <see cref="OpRegistry.Id"/>).</summary>
    public static Op GroupNorm => OpRegistry.Id(ref _op);

    /// <summary>The backward op's id (see <see cref="GroupNorm"/>).</summary>
    public static Op GroupNormBackward => OpRegistry.Id(ref _backward);

    public static void Register()
    {
        _op = OpRegistry.Declare("GroupNorm");
        OpRegistry.Define(new OpDef(_op, "GroupNorm")
        {
            Inputs = ["x", "weight?", "bias?"],
            Outputs = ["y", "mean", "invstd"],
            Attrs = typeof(GroupNormAttrs),
            Summary = "y = (x - mean) / sqrt(var + eps) * weight + bias over each sample's group of C/G channels of (N, C, *)",
            Shapes = (i, a) => Shapes("GroupNorm", i, a),
            Backward = Backward,
            Fallback = Composite,
        });
        CpuBackend.Instance.Kernels.Add(_op, (i, o, a) => CpuGroupNorm.Forward(i[0], i[1], i[2], o[0], o[1], o[2], (GroupNormAttrs)a!),
            (i, a) => i[0].DType is DType.F32 or DType.F64);

        _backward = OpRegistry.Declare("GroupNormBackward");
        OpRegistry.Define(new OpDef(_backward, "GroupNormBackward")
        {
            Inputs = ["dy", "x", "weight?", "mean", "invstd"],
            Outputs = ["dx", "dweight", "dbias"],
            Summary = "GroupNorm's gradients from dy and the forward's saved (N, G) mean and invstd",
            Shapes = (i, a) => BackwardShapes("GroupNormBackward", i),
            Fallback = BackwardComposite,
        });
        CpuBackend.Instance.Kernels.Add(_backward, (i, o, a) => CpuGroupNorm.Backward(i[0], i[1], i[2], i[3], i[4], o[0], o[1], o[2]),
            (i, a) => i[0].DType is DType.F32 or DType.F64);
    }

    /// <summary>The output rule of GroupNorm and of the ops built on it (<paramref name="op"/> names the op in errors).</summary>
    internal static TensorSpec[] Shapes(string op, Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor x = inputs[0], w = inputs[1], b = inputs[2];
        if (attrs is not GroupNormAttrs a) throw new ArgumentException($"{op} takes GroupNormAttrs(groups, eps)");
        if (!x.DType.IsFloat()) throw new NotSupportedException($"{op} needs a floating-point tensor, got {x.Describe()}");
        if (x.Rank < 2) throw new ArgumentException($"{op}: input must be (N, C, ...), got {x.Describe()}");
        int c = x.Shape[1];
        if (a.Groups < 1 || c % a.Groups != 0)
            throw new ArgumentException($"{op}: {a.Groups} groups must divide the {c} channels of {x.Describe()}");
        if (!(a.Eps >= 0)) throw new ArgumentException($"{op}: eps {a.Eps} must be >= 0");
        foreach (var (t, name) in new[] { (w, "weight"), (b, "bias") })
        {
            if (t.Numel > 0 && (t.Rank != 1 || t.Shape[0] != c))
                throw new ArgumentException($"{op}: {name} has shape {Tensor.ShapeString(t.Shape)}, expected [{c}] (the channels of {x.Describe()})");
            if (t.Numel > 0 && t.DType != x.DType)
                throw new ArgumentException($"{op}: {name} {t.Describe()} must have the dtype of {x.Describe()}");
        }
        return [new(x.Shape, x.DType), new([x.Shape[0], a.Groups], x.DType), new([x.Shape[0], a.Groups], x.DType)];
    }

    /// <summary>(C) -> (1, C, 1, ...) to broadcast over a rank-<paramref name="rank"/> input.</summary>
    internal static Tensor PerChannel(Tensor v, int rank) => v.Reshape([1, v.Shape[0], .. Enumerable.Repeat(1, rank - 2)]);

    /// <summary>The axes of x other than the channel axis: the sums that give the per-channel weight and bias gradients.</summary>
    private static int[] AllButChannel(int rank) => [0, .. Enumerable.Range(2, rank - 2)];

    private static Tensor?[] Backward(OpNode node, Tensor y, Tensor g)
    {
        Tensor w = node.Inputs[1], b = node.Inputs[2];
        var r = Tensor.Apply(GroupNormBackward, null, g, node.Inputs[0], w, node.Saved[0], node.Saved[1]);
        return [r[0], w.Numel > 0 ? r[1] : null, b.Numel > 0 ? r[2] : null];
    }

    /// <summary>The output rule of GroupNormBackward and of the ops built on it: dy and x (N, C, ...), weight? (C), mean and invstd (N, G).</summary>
    internal static TensorSpec[] BackwardShapes(string op, Tensor[] inputs)
    {
        Tensor dy = inputs[0], x = inputs[1], w = inputs[2], mean = inputs[3], invstd = inputs[4];
        if (x.Rank < 2) throw new ArgumentException($"{op}: x must be (N, C, ...), got {x.Describe()}");
        if (!dy.Shape.AsSpan().SequenceEqual(x.Shape) || dy.DType != x.DType)
            throw new ArgumentException($"{op}: dy {dy.Describe()} must have the shape and dtype of x {x.Describe()}");
        int n = x.Shape[0], c = x.Shape[1];
        foreach (var (t, name) in new[] { (mean, "mean"), (invstd, "invstd") })
            if (t.Rank != 2 || t.Shape[0] != n || t.Shape[1] < 1 || c % t.Shape[1] != 0 || t.DType != x.DType || !t.Shape.AsSpan().SequenceEqual(mean.Shape))
                throw new ArgumentException($"{op}: {name} {t.Describe()} must be [{n}, G] of x's dtype {x.DType}, G dividing the {c} channels");
        if (w.Numel > 0 && (w.Rank != 1 || w.Shape[0] != c || w.DType != x.DType))
            throw new ArgumentException($"{op}: weight {w.Describe()} must be [{c}] of x's dtype {x.DType}");
        return [new(x.Shape, x.DType), new([c], x.DType), new([c], x.DType)];
    }

    /// <summary>The gradients in tensor ops (what runs where a backend has no GroupNormBackward kernel).</summary>
    private static Tensor[] BackwardComposite(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor g = inputs[0], x = inputs[1], w = inputs[2];
        int n = x.Shape[0], groups = inputs[3].Shape[1];
        var mean = inputs[3].Unsqueeze(-1);                          // (N, G, 1)
        var invstd = inputs[4].Unsqueeze(-1);                        // (N, G, 1)
        var xhat = (x.Reshape(n, groups, -1) - mean) * invstd;       // (N, G, M)
        double m = xhat.Shape[2];
        var gy = (w.Numel > 0 ? g * PerChannel(w, x.Rank) : g).Reshape(n, groups, -1);   // (N, G, M)
        var dx = invstd / m * (gy * m - gy.Sum(-1, keepDim: true) - xhat * (gy * xhat).Sum(-1, keepDim: true));
        var axes = AllButChannel(x.Rank);
        return [dx.Reshape(x.Shape), (g * xhat.Reshape(x.Shape)).Sum(axes), g.Sum(axes)];
    }

    private static Tensor[] Composite(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor x = inputs[0], w = inputs[1], b = inputs[2];
        var a = (GroupNormAttrs)attrs!;
        int n = x.Shape[0];
        var xg = x.Reshape(n, a.Groups, -1);                                              // (N, G, M)
        var mean = xg.Mean(-1, keepDim: true);                                            // (N, G, 1)
        var invstd = xg.Var(-1, keepDim: true, correction: 0).AddScalar(a.Eps).Rsqrt();  // (N, G, 1)
        var y = ((xg - mean) * invstd).Reshape(x.Shape);
        if (w.Numel > 0) y *= PerChannel(w, x.Rank);
        if (b.Numel > 0) y += PerChannel(b, x.Rank);
        return [y, mean.Reshape(n, a.Groups), invstd.Reshape(n, a.Groups)];
    }
}

public sealed partial class Tensor
{
    /// <summary>
    /// Group norm of (N, C, ...) over each sample's <paramref name="groups"/> groups of channels, with optional per-channel
    /// weight and bias (torch.nn.functional.group_norm); declared in Ops/GroupNormOps.cs. Float32 under autocast (Autocast.cs).
    /// </summary>
    public Tensor GroupNorm(int groups, Tensor? weight, Tensor? bias, double eps = 1e-5)
        => Apply(GroupNormOps.GroupNorm, new GroupNormAttrs(groups, eps), Autocast.Fp32(this), weight ?? None(), bias ?? None())[0];
}
