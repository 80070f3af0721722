using ManagedTensor.Cpu;

namespace ManagedTensor;

/// <summary>
/// Group norm followed by SiLU, as one op: the diffusion U-Net's pre-activation (every ResBlock runs
/// conv(silu(group_norm(x))) twice, and the output head once). With y = GroupNorm(x) (Ops/GroupNormOps.cs has its math):
///   z = silu(y) = y sigmoid(y);   outputs z and the (N, G) mean and invstd.
/// Backward (the op GroupNormSiluBackward: dz, x, weight?, bias?, mean, invstd -> dx, dweight, dbias): g = dz s (1 + y (1 - s)),
/// s = sigmoid(y), with y recomputed from x (y = x * scale_c + shift_c per sample and channel), then group norm's own
/// backward of g. As with BatchNormSilu2d (Ops/BatchNormSiluOps.cs), y is never stored: the CPU kernel
/// (Cpu/CpuGroupNorm.cs with silu on) runs the norm's passes with SiLU in the output pass and SiLU's gradient in the
/// backward's first pass. Elsewhere the composites below run (GroupNorm then Silu, differentiated op by op).
/// </summary>
internal static class GroupNormSiluOps
{
    private static Op _op, _backward;

    /// <summary>The op's id, set when the registry registers the op (see <see cref="OpRegistry.Id"/>).</summary>
    public static Op GroupNormSilu => OpRegistry.Id(ref _op);

    /// <summary>The backward op's id (see <see cref="GroupNormSilu"/>).</summary>
    public static Op GroupNormSiluBackward => OpRegistry.Id(ref _backward);

    public static void Register()
    {
        _op = OpRegistry.Declare("GroupNormSilu");
        OpRegistry.Define(new OpDef(_op, "GroupNormSilu")
        {
            Inputs = ["x", "weight?", "bias?"],
            Outputs = ["z", "mean", "invstd"],
            Attrs = typeof(GroupNormAttrs),
            Summary = "z = silu(group norm(x) * weight + bias) over each sample's group of C/G channels of (N, C, *)",
            Shapes = (i, a) => GroupNormOps.Shapes("GroupNormSilu", i, a),
            Backward = Backward,
            Fallback = Composite,
        });
        CpuBackend.Instance.Kernels.Add(_op, (i, o, a) => CpuGroupNorm.Forward(i[0], i[1], i[2], o[0], o[1], o[2], (GroupNormAttrs)a!, silu: true),
            (i, a) => i[0].DType is DType.F32 or DType.F64);

        _backward = OpRegistry.Declare("GroupNormSiluBackward");
        OpRegistry.Define(new OpDef(_backward, "GroupNormSiluBackward")
        {
            Inputs = ["dz", "x", "weight?", "bias?", "mean", "invstd"],
            Outputs = ["dx", "dweight", "dbias"],
            Summary = "GroupNormSilu's gradients from dz and the forward's saved (N, G) mean and invstd",
            Shapes = BackwardShapes,
            Fallback = BackwardComposite,
        });
        CpuBackend.Instance.Kernels.Add(_backward, (i, o, a) => CpuGroupNorm.Backward(i[0], i[1], i[2], i[4], i[5], o[0], o[1], o[2], i[3], silu: true),
            (i, a) => i[0].DType is DType.F32 or DType.F64);
    }

    private static Tensor?[] Backward(OpNode node, Tensor z, Tensor g)
    {
        Tensor w = node.Inputs[1], b = node.Inputs[2];
        var r = Tensor.Apply(GroupNormSiluBackward, null, g, node.Inputs[0], w, b, node.Saved[0], node.Saved[1]);
        return [r[0], w.Numel > 0 ? r[1] : null, b.Numel > 0 ? r[2] : null];
    }

    private static TensorSpec[] BackwardShapes(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor x = inputs[1], b = inputs[3];
        int c = x.Rank >= 2 ? x.Shape[1] : -1;
        if (b.Numel > 0 && (b.Rank != 1 || b.Shape[0] != c || b.DType != x.DType))
            throw new ArgumentException($"GroupNormSiluBackward: bias {b.Describe()} must be [{c}] of x's dtype {x.DType}");
        return GroupNormOps.BackwardShapes("GroupNormSiluBackward", [inputs[0], x, inputs[2], inputs[4], inputs[5]]);
    }

    /// <summary>y recomputed, SiLU's gradient at y, then group norm's backward: what runs where there is no fused kernel.</summary>
    private static Tensor[] BackwardComposite(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor dz = inputs[0], x = inputs[1], w = inputs[2], b = inputs[3], mean = inputs[4], invstd = inputs[5];
        int n = x.Shape[0], groups = mean.Shape[1];
        var xhat = ((x.Reshape(n, groups, -1) - mean.Unsqueeze(-1)) * invstd.Unsqueeze(-1)).Reshape(x.Shape);   // (N, C, *)
        var y = w.Numel > 0 ? xhat * GroupNormOps.PerChannel(w, x.Rank) : xhat;
        if (b.Numel > 0) y += GroupNormOps.PerChannel(b, x.Rank);
        var g = Tensor.Apply(SiluBackwardOps.SiluBackward, null, dz, y)[0];
        return Tensor.Apply(GroupNormOps.GroupNormBackward, null, g, x, w, mean, invstd);
    }

    private static Tensor[] Composite(Tensor[] inputs, OpAttrs? attrs)
    {
        var r = Tensor.Apply(GroupNormOps.GroupNorm, attrs, inputs[0], inputs[1], inputs[2]);
        return [r[0].Silu(), r[1], r[2]];
    }
}

public sealed partial class Tensor
{
    /// <summary>silu(group norm(x)) as one op: the same as <see cref="GroupNorm"/> then <see cref="Silu"/>, y never stored (Ops/GroupNormSiluOps.cs).</summary>
    public Tensor GroupNormSilu(int groups, Tensor? weight, Tensor? bias, double eps = 1e-5)
        => Apply(GroupNormSiluOps.GroupNormSilu, new GroupNormAttrs(groups, eps), Autocast.Fp32(this), weight ?? None(), bias ?? None())[0];
}
