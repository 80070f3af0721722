namespace ManagedTensor.Models.Training;

/// <summary>One point of the loss curve: the training loss of a step, or an evaluation (Val set).</summary>
public sealed record LossPoint(int Iter, double Train, double? Val = null);

/// <summary>
/// Everything besides the tensors that an exact resume needs: the next iteration, the generator offsets
/// (training batches, dropout masks), the optimizer's step count and the history. Evaluation batches need
/// no offset: each evaluation draws from its own range of counters, fixed by its step (see
/// <see cref="GptTrainer.EstimateLoss"/>). Saved as JSON in the checkpoint's safetensors metadata.
/// </summary>
public sealed record TrainState
{
    public int Iter { get; init; }
    public ulong BatchOffset { get; init; }
    public ulong DropoutOffset { get; init; }
    public int OptimizerSteps { get; init; }
    public double BestValLoss { get; init; } = double.PositiveInfinity;
    public int BestValIter { get; init; } = -1;
    public int LastEvalIter { get; init; } = -1;
    /// <summary>The fp16 loss scale and its count of good steps (<see cref="Optim.GradScaler"/>); null without fp16 autocast.</summary>
    public double? LossScale { get; init; }
    public int LossScaleGoodSteps { get; init; }
    public List<LossPoint> History { get; init; } = [];

    /// <summary>
    /// Throws <see cref="InvalidDataException"/> naming the field when the state cannot have been written by a run:
    /// a resume from it would start at a step that never was, or replay a different optimizer.
    /// </summary>
    public void Validate(string source)
    {
        void Fail(string message) => throw new InvalidDataException($"{source}: train_state: {message}");
        if (Iter < 0) Fail($"iter = {Iter} is negative");
        // At most one optimizer step per iteration (gradient accumulation sums micro-batches into one step); fewer only
        // when fp16 loss scaling skipped steps that overflowed.
        if (OptimizerSteps < 0 || OptimizerSteps > Iter || LossScale is null && OptimizerSteps != Iter)
            Fail($"optimizer_steps = {OptimizerSteps} differs from iter = {Iter}" + (LossScale is null ? "" : " (or exceeds it)"));
        if (LossScale is { } scale && !(double.IsFinite(scale) && scale > 0)) Fail($"loss_scale = {scale} is not a finite number > 0");
        if (LossScaleGoodSteps < 0) Fail($"loss_scale_good_steps = {LossScaleGoodSteps} is negative");
        if (LastEvalIter < -1 || LastEvalIter > Iter) Fail($"last_eval_iter = {LastEvalIter} is outside [-1, iter = {Iter}]");
        if (BestValIter < -1 || BestValIter > Iter) Fail($"best_val_iter = {BestValIter} is outside [-1, iter = {Iter}]");
        if (double.IsNaN(BestValLoss) || BestValLoss < 0) Fail($"best_val_loss = {BestValLoss} is not a loss");
        if (History is null) Fail("history is null, expected a list of loss points");
        for (int i = 0; i < History!.Count; i++)
        {
            var p = History[i];
            if (p is null) Fail($"history[{i}] is null");
            if (p!.Iter < 0 || p.Iter > Iter) Fail($"history[{i}].iter = {p.Iter} is outside [0, iter = {Iter}]");
        }
    }
}
