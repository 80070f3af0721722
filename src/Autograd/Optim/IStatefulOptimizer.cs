namespace ManagedTensor.Optim;

/// <summary>
/// An optimizer whose state a checkpoint saves and restores, so a resumed run takes the steps it would have taken:
/// its state as named tensors (torch's names: "exp_avg.NAME", ...), and the same dictionary read back with the step count.
/// </summary>
public interface IStatefulOptimizer : IOptimizer
{
    IEnumerable<KeyValuePair<string, Tensor>> StateTensors();

    /// <summary>Restores what <see cref="StateTensors"/> saved; an <see cref="ArgumentException"/> names a missing or misshapen entry and <paramref name="source"/>.</summary>
    void LoadState(IReadOnlyDictionary<string, Tensor> state, int stepCount, string source = "checkpoint");
}
