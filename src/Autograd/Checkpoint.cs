namespace ManagedTensor;

/// <summary>
/// Activation checkpointing (Chen et al. 2016; torch.utils.checkpoint): runs a block's forward without
/// keeping its activations, and in the backward pass runs the forward again, with recording on, to get
/// them back. Memory for activations drops from one set per block to the block inputs plus one block's
/// worth, for one extra forward per block. Parameters used inside the block get their gradients from the
/// recomputed graph's backward, exactly as without checkpointing; dropout draws the same masks both
/// times because the generators given are rewound to where they were before the first forward.
/// </summary>
public sealed class Checkpoint : CustomFunction
{
    private readonly Func<Tensor[], Tensor> _block;
    private readonly Generator[] _generators;
    private ulong[] _offsetsBefore = [];

    private Checkpoint(Func<Tensor[], Tensor> block, Generator[] generators)
    {
        _block = block;
        _generators = generators;
    }

    /// <summary>
    /// block(inputs), checkpointed. <paramref name="generators"/> are the random generators the block
    /// draws from (its dropout masks), so the recomputation draws the same numbers.
    /// </summary>
    public static Tensor Run(Func<Tensor[], Tensor> block, Tensor[] inputs, params Generator[] generators) =>
        GradMode.IsEnabled ? new Checkpoint(block, generators).Apply(inputs) : block(inputs);

    /// <summary>A one-input block, checkpointed.</summary>
    public static Tensor Run(Func<Tensor, Tensor> block, Tensor input, params Generator[] generators) =>
        Run(xs => block(xs[0]), [input], generators);

    protected override Tensor Forward(Tensor[] inputs)
    {
        _offsetsBefore = _generators.Select(g => g.Offset).ToArray();
        return _block(inputs);
    }

    protected override Tensor?[] Backward(Tensor[] inputs, Tensor output, Tensor grad)
    {
        // Recompute with the generators where they were, then put them back where the run has moved them.
        var offsetsNow = _generators.Select(g => g.Offset).ToArray();
        for (int i = 0; i < _generators.Length; i++) _generators[i].Offset = _offsetsBefore[i];
        var detached = inputs.Select(x =>
        {
            var d = x.Detach();
            d.RequiresGrad = x.RequiresGrad;
            return d;
        }).ToArray();
        Tensor y;
        using (GradMode.Enable()) y = _block(detached);
        for (int i = 0; i < _generators.Length; i++) _generators[i].Offset = offsetsNow[i];
        if (y.RequiresGrad) y.Backward(grad); // parameters inside the block accumulate their gradients here
        return detached.Select(d => d.RequiresGrad ? d.Grad : null).ToArray();
    }
}
