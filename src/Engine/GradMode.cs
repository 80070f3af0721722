namespace ManagedTensor;

/// <summary>
/// The graph record an op leaves on its output when any input requires a gradient (the tensor is its
/// own graph node, as in ggml). Autograd walks these records backwards; the engine never reads them.
/// </summary>
/// <param name="Op">The op that produced the tensor holding this node.</param>
/// <param name="Inputs">The op's tensor inputs, in the op's order (empty tensors stand for absent optional inputs).</param>
/// <param name="Attrs">The op's attributes.</param>
/// <param name="Saved">Extra tensors the backward rule needs (layer norm's mean and rstd, max-pool's argmax, ...).</param>
public sealed record OpNode(Op Op, Tensor[] Inputs, OpAttrs? Attrs, Tensor[] Saved);

/// <summary>Whether ops record graph nodes. <c>using (GradMode.NoGrad()) { ... }</c> turns recording off on this thread.</summary>
public static class GradMode
{
    [ThreadStatic] private static int _disabledDepth;

    public static bool IsEnabled => _disabledDepth == 0;

    public static IDisposable NoGrad()
    {
        _disabledDepth++;
        return new Scope(_disabledDepth - 1);
    }

    /// <summary>
    /// Turns recording back on inside a NoGrad region (activation checkpointing recomputes a block's forward
    /// with recording on while autograd's backward pass runs with it off); the old state returns on Dispose.
    /// </summary>
    public static IDisposable Enable()
    {
        int old = _disabledDepth;
        _disabledDepth = 0;
        return new Scope(old);
    }

    private sealed class Scope(int restore) : IDisposable
    {
        private bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            _disabledDepth = restore;
        }
    }
}
