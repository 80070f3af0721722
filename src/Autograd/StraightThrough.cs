namespace ManagedTensor;

/// <summary>
/// The straight-through estimator (Bengio et al. 2013): the forward applies a function with no useful
/// derivative (rounding, quantization: zero almost everywhere), the backward pretends it was the identity
/// and passes dL/dy to x unchanged. BitNet trains ternary weights and 8-bit activations this way; the
/// usual tensor formula for it, x + (q(x) - x).detach(), gives the same gradient with two extra ops.
/// </summary>
public sealed class StraightThrough(Func<Tensor, Tensor> quantize) : CustomFunction
{
    /// <summary>quantize(x) in the forward, identity in the backward.</summary>
    public static Tensor Apply(Tensor x, Func<Tensor, Tensor> quantize) => new StraightThrough(quantize).Apply(x);

    public override string Name => "StraightThrough";

    protected override Tensor Forward(Tensor[] inputs)
    {
        var y = quantize(inputs[0]);
        if (!y.Shape.AsSpan().SequenceEqual(inputs[0].Shape))
            throw new ArgumentException($"StraightThrough: the function changed the shape {Tensor.ShapeString(inputs[0].Shape)} to {Tensor.ShapeString(y.Shape)}");
        return y;
    }

    protected override Tensor?[] Backward(Tensor[] inputs, Tensor output, Tensor grad) => [grad];
}
