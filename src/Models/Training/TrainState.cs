namespace ManagedTensor.Models.Training;

/// <summary>One point of the loss curve: the training loss of a step, or an evaluation (Val set).</summary>
public sealed record LossPoint(int Iter, double Train, double? Val = null);

/// <summary>
/// Everything besides the tensors that an exact resume needs: the next iteration, the generator offsets
/// (training batches, evaluation batches, dropout masks), the optimizer's step count and the history.
/// Saved as JSON in the checkpoint's safetensors metadata.
/// </summary>
public sealed record TrainState
{
    public int Iter { get; init; }
    public ulong BatchOffset { get; init; }
    public ulong EvalOffset { get; init; }
    public ulong DropoutOffset { get; init; }
    public int OptimizerSteps { get; init; }
    public double BestValLoss { get; init; } = double.PositiveInfinity;
    public int LastEvalIter { get; init; } = -1;
    public List<LossPoint> History { get; init; } = [];
}
