namespace ManagedTensor;

/// <summary>
/// RMS norm, declared as every op beyond the hand-written front ends is: inputs, attributes, output rule,
/// backward rule and a composite fallback. The CPU kernel covers F32 and F64; other dtypes (and any backend
/// without a kernel) run the composite, computed in float32:
///   rstd = rsqrt(mean(x^2) + eps),  y = x * rstd * weight.
/// </summary>
internal static class NormOps
{
    public static void Register()
    {
        OpRegistry.Define(new OpDef(Op.RmsNorm, nameof(Op.RmsNorm))
        {
            Inputs = ["x", "weight?"],
            Outputs = ["y", "rstd"],
            Attrs = typeof(NormAttrs),
            Summary = "y = x / sqrt(mean(x^2) + eps) * weight over the last axis; rstd per row",
            Shapes = RmsNormShapes,
            Backward = RmsNormBackward,
            Fallback = RmsNormComposite,
        });
    }

    private static TensorSpec[] RmsNormShapes(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor x = inputs[0], w = inputs[1];
        if (!x.DType.IsFloat()) throw new NotSupportedException($"RmsNorm needs a floating-point tensor, got {x.Describe()}");
        if (x.Rank == 0) throw new ArgumentException($"RmsNorm: input {x.Describe()} needs at least one axis");
        int c = x.Shape[^1], rows = x.Numel / Math.Max(c, 1);
        if (w.Numel > 0 && (w.Rank != 1 || w.Shape[0] != c))
            throw new ArgumentException($"RmsNorm: weight has shape {Tensor.ShapeString(w.Shape)}, expected [{c}]");
        if (w.Numel > 0 && w.DType != x.DType)
            throw new ArgumentException($"RmsNorm: dtypes differ: {x.Describe()} and weight {w.Describe()}; cast one with To(DType)");
        if (attrs is not NormAttrs) throw new ArgumentException("RmsNorm takes NormAttrs(eps)");
        return [new(x.Shape, x.DType), new([rows], x.DType)];
    }

    /// <summary>The fused backward op gives dx and dweight from the saved rstd.</summary>
    private static Tensor?[] RmsNormBackward(OpNode node, Tensor y, Tensor g)
    {
        Tensor x = node.Inputs[0], w = node.Inputs[1];
        var (dx, dw) = Tensor.RmsNormBackward(g, x, w, node.Saved[0], (NormAttrs)node.Attrs!);
        return [dx, w.Numel > 0 ? dw : null];
    }

    private static Tensor[] RmsNormComposite(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor x = inputs[0], w = inputs[1];
        double eps = ((NormAttrs)attrs!).Eps;
        var x32 = x.DType == DType.F64 ? x : x.To(DType.F32);
        var rstd = (x32 * x32).Mean(-1, keepDim: true).AddScalar(eps).Rsqrt();   // (..., 1)
        var y = x32 * rstd;
        if (w.Numel > 0) y *= w.To(x32.DType);
        int rows = x.Numel / Math.Max(x.Shape[^1], 1);
        return [y.To(x.DType), rstd.Reshape(rows).To(x.DType)];
    }
}
