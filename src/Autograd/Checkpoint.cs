namespace ManagedTensor;

/// <summary>
/// Activation checkpointing (Chen et al. 2016; torch.utils.checkpoint): runs a block's forward without
/// keeping its activations, and in the backward pass runs the forward again, with recording on, to get
/// them back. Memory for activations drops from one set per block to the block inputs plus one block's
/// worth, for one extra forward per block. Parameters used inside the block get their gradients from the
/// recomputed graph's backward, exactly as without checkpointing; dropout draws the same masks both
/// times because the generators given are rewound to where they were before the first forward.
/// On a device (GPU, ilgpu-cpu) the block's intermediates are freed as soon as they are dead rather than at the end
/// of the caller's memory scope (a training step's): the forward runs in a scope of its own that keeps only the
/// output, and the recomputation in one that keeps only the input gradients and the leaves' (parameters')
/// gradients. So a checkpointed step holds the block inputs plus one block's forward and backward at a time,
/// which is what `mt plan` predicts (src/Models/Planning).
/// </summary>
public sealed class Checkpoint : CustomFunction
{
    private readonly Func<Tensor[], Tensor> _block;
    private readonly Generator[] _generators;
    private ulong[] _offsetsBefore = [];
    private DType? _autocast; // the forward's autocast dtype: the recomputation must round as the forward did

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
        _autocast = Autocast.DType;
        using var scope = DeviceMemory.Scope();
        return scope.Keep(_block(inputs));
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
        using var scope = DeviceMemory.Scope();
        Tensor y;
        using (GradMode.Enable())
        using (Autocast.Enable(_autocast))
            y = _block(detached);
        for (int i = 0; i < _generators.Length; i++) _generators[i].Offset = offsetsNow[i];
        if (!y.RequiresGrad) return new Tensor?[inputs.Length];
        y.Backward(grad); // parameters inside the block accumulate their gradients here
        foreach (var leaf in Leaves(y))
            if (leaf.Grad is { } g) scope.Keep(g); // the block's parameters keep their gradients past the scope
        return detached.Select(d => d.RequiresGrad && d.Grad is { } g ? scope.Keep(g) : null).ToArray();
    }

    /// <summary>The tensors without a recorded op (parameters, the detached inputs) that <paramref name="y"/>'s graph reaches through tensors requiring gradients.</summary>
    private static List<Tensor> Leaves(Tensor y)
    {
        var leaves = new List<Tensor>();
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance) { y };
        var stack = new Stack<Tensor>([y]);
        while (stack.Count > 0)
        {
            var t = stack.Pop();
            if (t.Node is null)
            {
                leaves.Add(t);
                continue;
            }
            foreach (var x in t.Node.Inputs)
                if (x.RequiresGrad && seen.Add(x)) stack.Push(x);
        }
        return leaves;
    }
}
