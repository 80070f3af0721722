namespace ManagedTensor;

/// <summary>
/// One backend's kernels, by op: what <see cref="IBackend.Execute"/> runs. Each op family's file adds its
/// kernels (`Register(KernelTable)`), and the backend's constructor lists the families, so an op added to a
/// family needs no edit here or in the backend. An op may have several kernels with guards (say, one per
/// weight format); the first whose guard accepts the inputs runs.
/// </summary>
public sealed class KernelTable(string backend)
{
    private readonly Dictionary<Op, List<(OpKernel Kernel, KernelGuard? Guard)>> _kernels = new();

    /// <summary>Adds <paramref name="kernel"/> for <paramref name="op"/>, for inputs <paramref name="guard"/> accepts (all when null).</summary>
    public KernelTable Add(Op op, OpKernel kernel, KernelGuard? guard = null)
    {
        if (!_kernels.TryGetValue(op, out var list)) _kernels[op] = list = [];
        list.Add((kernel, guard));
        return this;
    }

    /// <summary>Adds one family kernel (which switches on the op it is given) for each of <paramref name="ops"/>.</summary>
    public KernelTable Add(IEnumerable<Op> ops, OpFamilyKernel kernel)
    {
        foreach (var op in ops) Add(op, (i, o, a) => kernel(op, i, o, a));
        return this;
    }

    /// <summary>Removes every kernel of <paramref name="op"/> (tests use it to exercise an op's fallback).</summary>
    public bool Remove(Op op) => _kernels.Remove(op);

    /// <summary>The ops with at least one kernel.</summary>
    public IEnumerable<Op> Ops => _kernels.Keys;

    public bool TryGet(Op op, ReadOnlySpan<Tensor> inputs, OpAttrs? attrs, out OpKernel kernel)
    {
        if (_kernels.TryGetValue(op, out var list))
            foreach (var (k, guard) in list)
                if (guard is null || guard(inputs, attrs))
                {
                    kernel = k;
                    return true;
                }
        kernel = null!;
        return false;
    }

    /// <summary>Whether some kernel of <paramref name="op"/> accepts these inputs.</summary>
    public bool Has(Op op, ReadOnlySpan<Tensor> inputs, OpAttrs? attrs) => TryGet(op, inputs, attrs, out _);

    /// <summary>Whether <paramref name="op"/> has any kernel at all.</summary>
    public bool Has(Op op) => _kernels.ContainsKey(op);

    /// <summary>Runs the kernel of <paramref name="op"/> that accepts the inputs, or says clearly that there is none.</summary>
    public void Run(Op op, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, OpAttrs? attrs)
    {
        if (!TryGet(op, inputs, attrs, out var kernel))
        {
            string what = inputs.Length > 0 ? $" for {string.Join(", ", inputs.ToArray().Select(t => t.DType))} inputs" : "";
            throw new NotSupportedException($"the {backend} backend has no kernel for op {OpRegistry.NameOf(op)}{what}");
        }
        kernel(inputs, outputs, attrs);
    }
}
