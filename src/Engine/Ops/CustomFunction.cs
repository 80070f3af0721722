namespace ManagedTensor;

/// <summary>
/// A function with its own backward, recorded on the graph as one node (PyTorch's torch.autograd.Function):
/// <see cref="Forward"/> runs with recording off, and autograd calls <see cref="Backward"/> with dL/d(output)
/// instead of differentiating what the forward did. Create one object per call: it is also the "context"
/// where the forward keeps what the backward needs. Used by activation checkpointing (forward without
/// keeping activations, backward recomputes them) and straight-through estimators (forward quantizes,
/// backward passes the gradient through unchanged).
/// </summary>
public abstract class CustomFunction
{
    /// <summary>Shown in errors and graph dumps.</summary>
    public virtual string Name => GetType().Name;

    /// <summary>The output from the inputs (recording is off here).</summary>
    protected abstract Tensor Forward(Tensor[] inputs);

    /// <summary>dL/d(input) for each input (null where an input needs none), from the inputs, the output and dL/d(output).</summary>
    protected abstract Tensor?[] Backward(Tensor[] inputs, Tensor output, Tensor grad);

    /// <summary>Runs the forward and records the node when an input requires a gradient.</summary>
    public Tensor Apply(params Tensor[] inputs)
    {
        Tensor y;
        using (GradMode.NoGrad()) y = Forward(inputs);
        // The node goes on a tensor object of its own: an input returned as it is must keep its own identity.
        if (y.Node is not null || y.RequiresGrad || inputs.Any(x => ReferenceEquals(x, y))) y = y.Detach();
        return Tensor.Record(y, Op.Custom, new CustomAttrs(this), inputs);
    }

    /// <summary>The declaration of <see cref="Op.Custom"/>: its backward is the function's own.</summary>
    internal static void Register() =>
        OpRegistry.Define(new OpDef(Op.Custom, nameof(Op.Custom))
        {
            Summary = "a user-defined function with its own backward (activation checkpointing, straight-through estimators)",
            Attrs = typeof(CustomAttrs),
            Backward = (node, y, g) => ((CustomAttrs)node.Attrs!).Function.Backward(node.Inputs, y, g),
        });
}
