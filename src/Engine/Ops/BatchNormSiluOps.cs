using ManagedTensor.Cpu;

namespace ManagedTensor;

/// <summary>
/// Batch norm with the batch's statistics followed by SiLU, as one op: the conv block of YOLOv8 (conv -> BatchNorm2d
/// -> SiLU, 57 of them in a training step of yolov8n). With y = BatchNorm2d(x) (Ops/BatchNormOps.cs has its math):
///   z = silu(y) = y sigmoid(y);   outputs z and the per-channel mean and invstd.
/// Backward (the op BatchNormSilu2dBackward: dz, x, weight?, bias?, mean, invstd -> dx, dweight, dbias): the gradient
/// at y is g = dz s (1 + y (1 - s)), s = sigmoid(y), with y recomputed from x, mean, invstd, weight and bias
/// (y = x * scale + shift per channel); then batch norm's own backward of g.
/// Separately, batch norm writes y, SiLU reads it and writes z, and the backward writes g then reads it twice: three
/// full-size passes and a stored activation each way. Fused, y is never stored: the CPU kernel
/// (Cpu/CpuBatchNorm.cs with silu on) runs the passes of the plain norm, with SiLU in its output pass and SiLU's
/// gradient in its first backward pass. Elsewhere (the GPU until it has a kernel) the composites below run:
/// BatchNorm2d then Silu, whose recorded ops autograd differentiates.
/// </summary>
internal static class BatchNormSiluOps
{
    private static Op _op, _backward;

    /// <summary>The op's id, set when the registry registers the op (see <see cref="OpRegistry.Id"/>).</summary>
    public static Op BatchNormSilu2d => OpRegistry.Id(ref _op);

    /// <summary>The backward op's id (see <see cref="BatchNormSilu2d"/>).</summary>
    public static Op BatchNormSilu2dBackward => OpRegistry.Id(ref _backward);

    public static void Register()
    {
        _op = OpRegistry.Declare("BatchNormSilu2d");
        OpRegistry.Define(new OpDef(_op, "BatchNormSilu2d")
        {
            Inputs = ["x", "weight?", "bias?"],
            Outputs = ["z", "mean", "invstd"],
            Attrs = typeof(NormAttrs),
            Summary = "z = silu((x - mean) / sqrt(var + eps) * weight + bias) per channel of (N, C, H, W), batch statistics",
            Shapes = (i, a) => BatchNormOps.Shapes("BatchNormSilu2d", i, a),
            Backward = Backward,
            Fallback = Composite,
        });
        CpuBackend.Instance.Kernels.Add(_op, (i, o, a) => CpuBatchNorm.Forward(i[0], i[1], i[2], o[0], o[1], o[2], ((NormAttrs)a!).Eps, silu: true),
            (i, a) => i[0].DType is DType.F32 or DType.F64);

        _backward = OpRegistry.Declare("BatchNormSilu2dBackward");
        OpRegistry.Define(new OpDef(_backward, "BatchNormSilu2dBackward")
        {
            Inputs = ["dz", "x", "weight?", "bias?", "mean", "invstd"],
            Outputs = ["dx", "dweight", "dbias"],
            Summary = "BatchNormSilu2d's gradients from dz and the forward's saved mean and invstd",
            Shapes = BackwardShapes,
            Fallback = BackwardComposite,
        });
        CpuBackend.Instance.Kernels.Add(_backward, (i, o, a) => CpuBatchNorm.Backward(i[0], i[1], i[2], i[4], i[5], o[0], o[1], o[2], i[3], silu: true),
            (i, a) => i[0].DType is DType.F32 or DType.F64);
    }

    private static Tensor?[] Backward(OpNode node, Tensor z, Tensor g)
    {
        Tensor w = node.Inputs[1], b = node.Inputs[2];
        var r = Tensor.Apply(BatchNormSilu2dBackward, null, g, node.Inputs[0], w, b, node.Saved[0], node.Saved[1]);
        return [r[0], w.Numel > 0 ? r[1] : null, b.Numel > 0 ? r[2] : null];
    }

    private static TensorSpec[] BackwardShapes(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor x = inputs[1], b = inputs[3];
        int c = x.Rank == 4 ? x.Shape[1] : -1;
        if (b.Numel > 0 && (b.Rank != 1 || b.Shape[0] != c || b.DType != x.DType))
            throw new ArgumentException($"BatchNormSilu2dBackward: bias {b.Describe()} must be [{c}] of x's dtype {x.DType}");
        return BatchNormOps.BackwardShapes("BatchNormSilu2dBackward", [inputs[0], x, inputs[2], inputs[4], inputs[5]]);
    }

    /// <summary>y recomputed, SiLU's gradient at y, then batch norm's backward: what runs where there is no fused kernel.</summary>
    private static Tensor[] BackwardComposite(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor dz = inputs[0], x = inputs[1], w = inputs[2], b = inputs[3], mean = inputs[4], invstd = inputs[5];
        var scale = w.Numel > 0 ? w * invstd : invstd;                                               // (C)
        var y = (x - BatchNormOps.PerChannel(mean)) * BatchNormOps.PerChannel(scale);                // (N, C, H, W)
        if (b.Numel > 0) y += BatchNormOps.PerChannel(b);
        var g = Tensor.Apply(SiluBackwardOps.SiluBackward, null, dz, y)[0];
        return Tensor.Apply(BatchNormOps.BatchNorm2dBackward, null, g, x, w, mean, invstd);
    }

    private static Tensor[] Composite(Tensor[] inputs, OpAttrs? attrs)
    {
        var (y, mean, invstd) = inputs[0].BatchNorm2d(inputs[1], inputs[2], ((NormAttrs)attrs!).Eps);
        return [y.Silu(), mean, invstd];
    }
}

public sealed partial class Tensor
{
    /// <summary>
    /// silu(batch norm(x)) with this batch's statistics over (N, H, W), as one op: returns z and the per-channel mean
    /// and 1/sqrt(var + eps) (biased variance), the same as <see cref="BatchNorm2d"/> then <see cref="Silu"/>.
    /// </summary>
    public (Tensor Z, Tensor Mean, Tensor InvStd) BatchNormSilu2d(Tensor? weight, Tensor? bias, double eps = 1e-5)
    {
        var r = Apply(BatchNormSiluOps.BatchNormSilu2d, new NormAttrs(eps), this, weight ?? None(), bias ?? None());
        return (r[0], r[1], r[2]);
    }
}
