using System.Diagnostics;
using ManagedTensor.Models.Data;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Training;

/// <summary>The settings of <see cref="TrainingLoop"/>, read from a <see cref="TrainConfig"/> or a <see cref="FinetuneConfig"/>.</summary>
public sealed record LoopSettings(int BatchSize, int BlockSize, int GradAccumSteps, int MaxIters, int EvalInterval, int EvalIters, int LogInterval,
    double GradClip, ulong Seed, string Autocast);

/// <summary>What <see cref="TrainingLoop"/> needs from a trainer: its model's loss, its data, its checkpoint files.</summary>
public interface ITrainee
{
    /// <summary>The mean cross-entropy of a batch (run inside the loop's autocast scope).</summary>
    Tensor Loss(Tensor x, Tensor y);

    /// <summary>Dropout on (training) or off (evaluation).</summary>
    void SetTraining(bool training);

    /// <summary>A batch of <paramref name="split"/> drawn from <paramref name="gen"/>, on the model's device.</summary>
    (Tensor X, Tensor Y) Batch(Split split, Generator gen);

    /// <summary>The parameters the optimizer updates (gradients are accumulated, tagged, clipped and unscaled over these).</summary>
    IReadOnlyList<Tensor> TrainedParameters { get; }

    /// <summary>The dropout generator's offset, saved in the checkpoint.</summary>
    ulong DropoutOffset { get; }

    /// <summary>The file a checkpoint is written to (the observer is told).</summary>
    string CheckpointPath { get; }

    /// <summary>Writes the checkpoint of <paramref name="state"/> (and the best copy when <paramref name="best"/>).</summary>
    void WriteCheckpoint(TrainState state, bool best);

    /// <summary>The error for a run that diverged at <paramref name="step"/>, saying which checkpoint is kept.</summary>
    TrainingDivergedException Diverged(int step, string what, int checkpointIter, TrainState state);
}

/// <summary>
/// nanoGPT's train.py loop, shared by <see cref="GptTrainer"/> and <see cref="FinetuneTrainer"/>: the learning rate from the
/// cosine schedule, one optimizer step over GradAccumSteps micro-batches (each in a memory scope of its own,
/// <see cref="MicroBatch"/>), clipping, an evaluation of both splits every eval interval from the step's own counter range,
/// a checkpoint after each, and a stop on request that checkpoints the step reached. Mixed precision is added here once:
/// the loss of each micro-batch is computed inside an <see cref="Autocast"/> scope (--autocast bf16|fp16), and with fp16 a
/// <see cref="GradScaler"/> scales the loss, unscales the float32 gradients before clipping, and skips a step that
/// overflowed. A loss or gradient norm that is not finite (other than an fp16 overflow) stops the run before the update
/// (<see cref="TrainingDivergedException"/>).
/// </summary>
public sealed class TrainingLoop
{
    private readonly LoopSettings _s;
    private readonly ITrainee _trainee;
    private readonly CosineSchedule _schedule;
    private readonly Generator _batchGen;
    private readonly DType? _autocast;
    private TrainState _state;

    /// <summary>A loop from <paramref name="state"/> (a fresh one, or a checkpoint's: <paramref name="resumed"/>).</summary>
    public TrainingLoop(LoopSettings settings, TrainState state, IStatefulOptimizer optimizer, CosineSchedule schedule, ITrainee trainee, bool resumed)
    {
        _s = settings;
        _state = state;
        Optimizer = optimizer;
        _schedule = schedule;
        _trainee = trainee;
        _batchGen = new Generator(settings.Seed + 1, state.BatchOffset);
        _autocast = MixedPrecision.AutocastDType(settings.Autocast);
        CheckpointIter = resumed ? state.Iter : -1;
        if (_autocast == DType.F16)
        {
            Scaler = new GradScaler();
            if (state.LossScale is { } scale) Scaler.Restore(scale, state.LossScaleGoodSteps);
        }
    }

    public IStatefulOptimizer Optimizer { get; }

    /// <summary>The loss scaler of an fp16 run (null otherwise).</summary>
    public GradScaler? Scaler { get; }

    /// <summary>Steps skipped by the loss scaler (fp16 overflow) in this process.</summary>
    public int SkippedSteps { get; private set; }

    public TrainState State => _state;

    /// <summary>The step of the checkpoint on disk, or -1 when none has been written.</summary>
    public int CheckpointIter { get; private set; }

    /// <summary>
    /// Trains from the current iteration up to MaxIters, evaluating and checkpointing on the way. When
    /// <paramref name="cancel"/> fires (Ctrl-C), the step in progress finishes (an evaluation in progress is
    /// abandoned), the state after it is checkpointed, and the run returns <see cref="TrainOutcome.Interrupted"/>.
    /// </summary>
    public TrainOutcome Run(ITrainStepObserver observer, CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        int tokensPerIter = _s.BatchSize * _s.BlockSize * _s.GradAccumSteps;
        int stepsTimed = 0; // steps since the clock was last restarted
        while (true)
        {
            int it = _state.Iter;
            if ((it % _s.EvalInterval == 0 || it == _s.MaxIters) && _state.LastEvalIter != it)
            {
                double train, val;
                try
                {
                    (train, val) = EstimateLoss(it, cancel);
                }
                catch (OperationCanceledException)
                {
                    return Interrupt(observer);
                }
                if (!double.IsFinite(train) || !double.IsFinite(val))
                    throw _trainee.Diverged(it, $"the evaluated loss is not finite (train {train}, val {val})", CheckpointIter, _state);
                bool best = val < _state.BestValLoss;
                _state = _state with
                {
                    LastEvalIter = it,
                    BestValLoss = best ? val : _state.BestValLoss,
                    BestValIter = best ? it : _state.BestValIter,
                };
                _state.History.Add(new LossPoint(it, train, val));
                observer.OnEval(it, train, val);
                SaveCheckpoint(best);
                observer.OnCheckpoint(it, _trainee.CheckpointPath, best);
                clock.Restart(); // do not count evaluation in the step time
                stepsTimed = 0;
            }
            if (it >= _s.MaxIters) return TrainOutcome.Finished;
            if (cancel.IsCancellationRequested) return Interrupt(observer);

            double loss = TrainStep(it);
            double lr = Optimizer.LearningRate;
            _state = _state with { Iter = it + 1 };
            stepsTimed++;
            if (it % _s.LogInterval == 0 || it + 1 == _s.MaxIters)
            {
                double ms = clock.Elapsed.TotalMilliseconds / stepsTimed;
                _state.History.Add(new LossPoint(it, loss));
                observer.OnStep(it, loss, lr, tokensPerIter / ms * 1000, ms);
                clock.Restart();
                stepsTimed = 0;
            }
        }
    }

    /// <summary>Checkpoints the step reached (unless that checkpoint exists) when a run is stopped on request.</summary>
    private TrainOutcome Interrupt(ITrainStepObserver observer)
    {
        if (CheckpointIter != _state.Iter)
        {
            SaveCheckpoint(best: false);
            observer.OnCheckpoint(_state.Iter, _trainee.CheckpointPath, best: false);
        }
        return TrainOutcome.Interrupted;
    }

    /// <summary>
    /// Iteration <paramref name="it"/> of train.py's loop: the learning rate from the schedule, then one optimizer step over
    /// GradAccumSteps micro-batches (autocast, loss scaling, clipping); returns the mean micro-batch loss. The micro-batches
    /// are random training batches unless <paramref name="nextBatch"/> gives them (the trajectory test feeds PyTorch's).
    /// On a GPU everything the step allocates is freed when it ends (a memory scope).
    /// </summary>
    public double TrainStep(int it, Func<(Tensor X, Tensor Y)>? nextBatch = null)
    {
        using var scope = DeviceMemory.Scope();
        Optimizer.LearningRate = _schedule.LearningRate(it);
        _trainee.SetTraining(true);
        var parameters = _trainee.TrainedParameters;
        // Gradients add up across micro-batches; scaling each one makes the sum a mean (times the fp16 loss scale).
        double scale = (Scaler?.Scale ?? 1) / _s.GradAccumSteps;
        double total = 0;
        for (int micro = 0; micro < _s.GradAccumSteps; micro++)
        {
            var (x, y) = nextBatch is null ? _trainee.Batch(Split.Train, _batchGen) : nextBatch();
            total += MicroBatch.Backward(parameters, () =>
            {
                using (Autocast.Enable(_autocast)) return _trainee.Loss(x, y);
            }, scale);
        }
        foreach (var p in parameters)
            if (p.Grad is { } g) DeviceMemory.Tag(g, MemoryCategory.Grads);
        double mean = total / _s.GradAccumSteps;
        // fp16: the gradients back to their true size before clipping; an overflow skips the step and halves the scale.
        bool overflow = Scaler is not null && !Scaler.Unscale(parameters);
        // The norm comes free with clipping; without it a non-finite gradient shows in the next step's loss, and the
        // evaluation before any checkpoint is checked too, so nothing non-finite reaches the disk either way.
        double norm = !overflow && _s.GradClip > 0 ? GradClip.ClipGradNorm(parameters, _s.GradClip) : 0;
        if (!double.IsFinite(mean) || !double.IsFinite(norm))
        {
            Optimizer.ZeroGrad();
            throw _trainee.Diverged(it, !double.IsFinite(mean) ? $"the loss is {mean}" : $"the gradient norm is {norm} (loss {mean:F4})", CheckpointIter, _state);
        }
        if (!overflow) Optimizer.Step();
        else SkippedSteps++;
        Optimizer.ZeroGrad();
        Scaler?.Update(stepped: !overflow);
        return mean;
    }

    /// <summary>
    /// nanoGPT's estimate_loss at step <paramref name="step"/>: the mean loss of EvalIters batches of each split, dropout
    /// off, under the run's autocast, the batches drawn from the step's own counter range (<see cref="GptTrainer.EvalCounterStride"/>).
    /// </summary>
    public (double Train, double Val) EstimateLoss(int step, CancellationToken cancel = default)
    {
        var gen = new Generator(_s.Seed + 3, (ulong)step * GptTrainer.EvalCounterStride);
        _trainee.SetTraining(false);
        try
        {
            double Mean(Split split)
            {
                double sum = 0;
                for (int k = 0; k < _s.EvalIters; k++)
                {
                    cancel.ThrowIfCancellationRequested();
                    using var scope = DeviceMemory.Scope();
                    var (x, y) = _trainee.Batch(split, gen);
                    using (GradMode.NoGrad())
                    using (Autocast.Enable(_autocast))
                        sum += _trainee.Loss(x, y).Item();
                }
                return sum / _s.EvalIters;
            }
            return (Mean(Split.Train), Mean(Split.Val));
        }
        finally
        {
            _trainee.SetTraining(true);
        }
    }

    /// <summary>Writes the checkpoint of the state reached, with the generator offsets, step count and loss scale in it.</summary>
    public void SaveCheckpoint(bool best)
    {
        _state = _state with
        {
            BatchOffset = _batchGen.Offset,
            DropoutOffset = _trainee.DropoutOffset,
            OptimizerSteps = Optimizer.StepCount,
            LossScale = Scaler?.Scale,
            LossScaleGoodSteps = Scaler?.GoodSteps ?? 0,
        };
        _trainee.WriteCheckpoint(_state, best);
        CheckpointIter = _state.Iter;
    }
}
