using ManagedTensor.Cpu;

namespace ManagedTensor;

/// <summary>
/// A convolution followed by SiLU, as one op: z = silu(conv2d(x, w) + b), the conv block of YOLOv8 once its batch norm
/// is folded into the conv for inference (ConvBnSilu.Fuse). Separately the conv writes its output and SiLU reads it
/// back and writes a second tensor; the CPU kernel (Cpu/CpuConv.cs, Cpu/CpuConvDirect.cs) applies SiLU to each block
/// of output rows while the direct path's C block is still in cache. Backward (rarely needed: the fused path is for
/// inference) recomputes u = conv2d(x, w) + b, then g = dz s (1 + u (1 - s)) (s = sigmoid(u)) and Conv2d's own
/// gradients of g. Elsewhere the composite below runs: Conv2d then Silu.
/// </summary>
internal static class ConvSiluOps
{
    private static Op _op;

    /// <summary>The op's id, set when the registry registers the op (see <see cref="OpRegistry.Id"/>).</summary>
    public static Op Conv2dSilu => OpRegistry.Id(ref _op);

    public static void Register()
    {
        _op = OpRegistry.Declare("Conv2dSilu");
        OpRegistry.Define(new OpDef(_op, "Conv2dSilu")
        {
            Inputs = ["x", "weight", "bias?"],
            Outputs = ["z"],
            Attrs = typeof(Conv2dAttrs),
            Summary = "z = silu(conv2d(x, weight) + bias), (N, C, H, W) -> (N, O, OH, OW)",
            Shapes = (inputs, attrs) =>
            {
                if (attrs is not Conv2dAttrs a) throw new ArgumentException("Conv2dSilu takes Conv2dAttrs");
                Tensor x = inputs[0], b = inputs[2];
                return [new(Tensor.Conv2dShape(x, inputs[1], b.Numel > 0 ? b : null, a, "Conv2dSilu"), x.DType)];
            },
            Backward = Backward,
            Fallback = (inputs, attrs) => [Tensor.Conv2d(inputs[0], inputs[1], inputs[2].Numel > 0 ? inputs[2] : null, (Conv2dAttrs)attrs!).Silu()],
        });
        CpuBackend.Instance.Kernels.Add(_op, (i, o, a) => CpuConv.Conv2dSilu(i[0], i[1], i[2], o[0], (Conv2dAttrs)a!),
            (i, a) => i[0].DType is DType.F32 or DType.F64);
    }

    private static Tensor?[] Backward(OpNode node, Tensor z, Tensor g)
    {
        Tensor x = node.Inputs[0], w = node.Inputs[1], b = node.Inputs[2];
        var a = (Conv2dAttrs)node.Attrs!;
        var u = Tensor.Conv2d(x, w, b.Numel > 0 ? b : null, a);                     // (N, O, OH, OW), recomputed
        var gu = Tensor.Apply(SiluBackwardOps.SiluBackward, null, g, u)[0];
        return [Tensor.Conv2dBackwardInput(gu, w, x.Shape, a), Tensor.Conv2dBackwardWeight(gu, x, w.Shape, a), b.Numel > 0 ? gu.Sum([0, 2, 3]) : null];
    }
}

public sealed partial class Tensor
{
    /// <summary>silu(conv2d(x, w) + bias) as one op (Ops/ConvSiluOps.cs): the same as <see cref="Conv2d(Tensor, Tensor, Tensor?, Conv2dAttrs)"/> then <see cref="Silu"/>.</summary>
    public static Tensor Conv2dSilu(Tensor x, Tensor w, Tensor? bias, Conv2dAttrs a) => Apply(ConvSiluOps.Conv2dSilu, a, x, w, bias ?? x.None())[0];
}
