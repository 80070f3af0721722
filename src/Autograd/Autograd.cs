namespace ManagedTensor;

/// <summary>
/// Reverse-mode automatic differentiation over the graph that ops record on their outputs
/// (<see cref="Tensor.Node"/>). <c>loss.Backward()</c> walks that graph from the loss back to the
/// leaves in reverse topological order, asks each op's backward rule (<see cref="OpDef.Backward"/>, from the
/// op registry) for its input gradients,
/// sums the gradients of tensors used more than once, and adds the result into <see cref="Tensor.Grad"/>
/// of every leaf that requires a gradient (so gradients accumulate across calls until zeroed).
/// </summary>
public static class Autograd
{
    static Autograd() => BackwardRules.Register();

    /// <summary>Adds the built-in ops' backward rules to the registry now (they are otherwise added before the first backward pass).</summary>
    public static void EnsureBackwardRules() { }

    /// <summary>
    /// Backpropagates from this tensor. <paramref name="gradient"/> is d(objective)/d(this); it may be
    /// omitted for a one-element tensor (a loss), where it is 1.
    /// </summary>
    public static void Backward(this Tensor root, Tensor? gradient = null)
    {
        if (!root.RequiresGrad)
            throw new InvalidOperationException($"backward from {root.Describe()}: it does not require a gradient (no input of its graph has RequiresGrad set, or it was computed under NoGrad)");
        if (gradient is null && root.Numel != 1)
            throw new ArgumentException($"backward from {root.Describe()}: a gradient argument is needed for a tensor of more than one element");
        if (gradient is not null && !gradient.Shape.AsSpan().SequenceEqual(root.Shape))
            throw new ArgumentException($"backward from {root.Describe()}: gradient has shape {Tensor.ShapeString(gradient.Shape)}");

        // Backward rules are built from ops; they must not themselves be recorded (no double backward).
        using var noGrad = GradMode.NoGrad();
        var pending = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance)
        {
            [root] = gradient?.ContiguousCopy() ?? Tensor.Ones(root.Shape, root.DType, root.Device),
        };
        // Sums this pass allocated itself: no one else holds them, so later terms are added in place.
        var owned = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var t in TopologicalOrder(root))
        {
            if (!pending.Remove(t, out var grad)) continue; // no path from the root reaches t's gradient
            if (t.Node is null)
            {
                AccumulateLeaf(t, grad);
                continue;
            }
            if (t.Node.Op == Op.Slice)
            {
                AccumulateSlice(pending, owned, t.Node, grad);
                continue;
            }
            var rule = OpRegistry.Get(t.Node.Op).Backward
                ?? throw new NotSupportedException($"autograd: op {OpRegistry.NameOf(t.Node.Op)} has no backward rule (it is not differentiable)");
            var inputGrads = rule(t.Node, t, grad);
            var inputs = t.Node.Inputs;
            for (int i = 0; i < inputs.Length; i++)
            {
                var x = inputs[i];
                var g = inputGrads[i];
                if (g is null || !x.RequiresGrad) continue;
                if (!g.Shape.AsSpan().SequenceEqual(x.Shape))
                    throw new InvalidOperationException($"backward rule of {OpRegistry.NameOf(t.Node.Op)} gave a gradient of shape {Tensor.ShapeString(g.Shape)} for input {i} of shape {Tensor.ShapeString(x.Shape)}");
                // Each gradient in its input's dtype, as PyTorch's engine casts it: a rule whose operands were promoted
                // (a 16-bit activation in a float32 op) may hand back the wider dtype.
                if (g.DType != x.DType) g = g.To(x.DType);
                if (!pending.TryGetValue(x, out var sum)) pending[x] = g;
                else if (owned.Contains(sum)) sum.AddInPlace_(g);
                else owned.Add(pending[x] = sum.Add(g));
            }
        }
    }

    /// <summary>
    /// The gradient of a slice goes into its window of the input's gradient. Pieces of one tensor (q, k and
    /// v split from one projection) then fill one buffer in place, rather than each making an input-sized
    /// zero tensor that is summed with the others (the generic rule, <see cref="BackwardRules"/>).
    /// </summary>
    private static void AccumulateSlice(Dictionary<Tensor, Tensor> pending, HashSet<Tensor> owned, OpNode node, Tensor g)
    {
        var x = node.Inputs[0];
        if (!x.RequiresGrad) return;
        var a = (SliceAttrs)node.Attrs!;
        if (!pending.TryGetValue(x, out var sum) || !owned.Contains(sum))
        {
            var buffer = sum?.ContiguousCopy() ?? x.ZerosLike();
            owned.Add(pending[x] = sum = buffer);
        }
        sum.Narrow(a.Axis, a.Start, a.Length).AddInPlace_(g);
    }

    /// <summary>Sets the gradient of every tensor to null (optimizers' zero_grad(set_to_none=True)).</summary>
    public static void ZeroGrad(this IEnumerable<Tensor> tensors)
    {
        foreach (var t in tensors) t.Grad = null;
    }

    /// <summary>
    /// Leaves get a contiguous gradient on the first backward and a new sum on later ones (never an
    /// in-place update: the first gradient may be shared with another leaf, e.g. both inputs of an Add).
    /// </summary>
    private static void AccumulateLeaf(Tensor leaf, Tensor grad)
    {
        // A dense tensor that spans its whole storage can be kept as it is; a view into a larger buffer
        // (or a strided one) is copied, so the gradient neither pins that buffer nor has odd strides.
        bool whole = grad.IsContiguous && grad.Offset == 0 && grad.Numel == grad.Storage.Length;
        leaf.Grad = leaf.Grad is null ? (whole ? grad : grad.ContiguousCopy()) : leaf.Grad.Add(grad);
    }

    /// <summary>
    /// Tensors reachable from <paramref name="root"/> through recorded inputs that require gradients,
    /// each after every tensor that consumes it (root first). Iterative post-order DFS, so deep graphs
    /// (hundreds of layers, long recurrences) cannot overflow the stack.
    /// </summary>
    private static List<Tensor> TopologicalOrder(Tensor root)
    {
        var postOrder = new List<Tensor>();
        var visited = new HashSet<Tensor>(ReferenceEqualityComparer.Instance) { root };
        var stack = new Stack<(Tensor Tensor, int NextInput)>();
        stack.Push((root, 0));
        while (stack.Count > 0)
        {
            var (t, next) = stack.Pop();
            var inputs = t.Node?.Inputs ?? [];
            while (next < inputs.Length && (!inputs[next].RequiresGrad || visited.Contains(inputs[next]))) next++;
            if (next == inputs.Length)
            {
                postOrder.Add(t);
                continue;
            }
            stack.Push((t, next + 1));
            visited.Add(inputs[next]);
            stack.Push((inputs[next], 0));
        }
        postOrder.Reverse();
        return postOrder;
    }
}
