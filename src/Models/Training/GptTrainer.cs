using System.Diagnostics;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.IO;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Training;

/// <summary>What the training loop reports; the app renders it (a live progress bar or plain lines).</summary>
public interface ITrainingObserver : ITrainStepObserver
{
    void OnStart(TrainableLM model, TrainConfig config, int startIter, ITokenizer tokenizer, TextDataset data);
}

/// <summary>How <see cref="GptTrainer.Run"/> ended: MaxIters reached, or stopped on request with the current step checkpointed.</summary>
public enum TrainOutcome
{
    Finished,
    Interrupted,
}

/// <summary>
/// nanoGPT's train.py as a class, for every architecture (<see cref="Architectures"/>: the model is built from
/// <see cref="TrainConfig.Arch"/>; the loop only needs <see cref="TrainableLM.Loss"/>): random batches from a 90/10 split, AdamW with a cosine schedule,
/// gradient accumulation and clipping, an evaluation of both splits every eval interval, and a
/// checkpoint after each evaluation and at the end. A run is a pure function of its <see cref="TrainConfig"/>:
/// batches, dropout masks and evaluation batches each come from their own seeded generator, and every
/// generator offset is in the checkpoint, so a resumed run continues with the same losses it would have
/// had without the interruption.
/// Nothing bad is written: a loss or gradient norm that is not finite stops the run before the step's update
/// and before any checkpoint (<see cref="TrainingDivergedException"/>), and a cancelled run checkpoints the step
/// it reached. Everything a run needs (a writable --out-dir, text longer than the block) is checked before the
/// model is built.
/// </summary>
public sealed class GptTrainer
{
    private readonly TrainConfig _cfg;
    private readonly Device _device;
    private readonly CosineSchedule _schedule;
    private readonly Generator _batchGen;
    private TrainState _state;
    private int _checkpointIter; // the step of the checkpoint on disk (-1: none yet)

    public TrainableLM Model { get; }
    public AdamW Optimizer { get; }
    public ITokenizer Tokenizer { get; }
    public TextDataset Data { get; }
    public IReadOnlyList<LossPoint> History => _state.History;
    public double BestValLoss => _state.BestValLoss;

    private GptTrainer(TrainConfig cfg, Device device, ITokenizer tokenizer, TextDataset data, TrainableLM model, TrainState state)
    {
        _cfg = cfg;
        _device = device;
        Tokenizer = tokenizer;
        Data = data;
        Model = model;
        _state = state;
        if (cfg.CheckpointActivations)
        {
            if (model is not IActivationCheckpointing checkpointed)
                throw new UserErrorException($"--checkpoint-activations: the {cfg.Arch} model has no per-block activation checkpointing (gpt has)");
            checkpointed.CheckpointActivations = true;
        }
        using (DeviceMemory.Category(MemoryCategory.OptimizerState))
            Optimizer = new AdamW(model.NamedParameters(), cfg.LearningRate, cfg.Beta1, cfg.Beta2, 1e-8, cfg.WeightDecay);
        _schedule = new CosineSchedule(cfg.LearningRate, cfg.MinLr, cfg.WarmupIters, cfg.LrDecayIters);
        _batchGen = new Generator(cfg.Seed + 1, state.BatchOffset);
        _checkpointIter = -1;
    }

    /// <summary>
    /// Evaluation at step s draws its batches from counters [s * stride, (s + 1) * stride) of the evaluation generator
    /// (seed + 3), so which batches an evaluation sees depends only on its step, never on the evaluations before it:
    /// a run stopped and resumed anywhere evaluates exactly as an unbroken one. Each batch row takes 2 counters
    /// (<see cref="Generator.NextInt"/>) in each of the 2 splits; <see cref="TrainConfig.Validate"/> keeps an
    /// evaluation inside its range.
    /// </summary>
    public const ulong EvalCounterStride = 1UL << 32;
    public const int CountersPerBatchRow = 4;

    /// <summary>
    /// A fresh run: checks --out-dir is writable and free (or <paramref name="replaceExisting"/>), reads and tokenizes
    /// the text, checks it is longer than the block, and only then builds the model from the seed.
    /// </summary>
    public static GptTrainer Create(TrainConfig cfg, Device device, bool replaceExisting = false)
    {
        cfg.Validate();
        if (GptCheckpoint.Exists(cfg.OutDir))
        {
            if (!replaceExisting)
                throw new UserErrorException(
                    $"--out-dir {cfg.OutDir} holds a run ({GptCheckpoint.FileName}): --resume continues it, --force starts over and replaces it, or choose another --out-dir");
            File.Delete(GptCheckpoint.PathIn(cfg.OutDir));
            File.Delete(GptCheckpoint.BestPathIn(cfg.OutDir));
        }
        AtomicFile.EnsureWritableDirectory(cfg.OutDir, "--out-dir");
        GptCheckpoint.RemoveStaleTemporaries(cfg.OutDir);
        string text = ReadText(cfg.DataPath);
        var tokenizer = ManagedTensor.Models.Data.Tokenizers.Create(cfg.Tokenizer, text);
        var data = TextDataset.FromText(text, tokenizer);
        data.RequireLongerThan(cfg.BlockSize, $"--data {cfg.DataPath}");
        var arch = Architectures.Get(cfg.Arch);
        TrainableLM model;
        using (DeviceMemory.Category(MemoryCategory.Weights))
            model = arch.Create(arch.ModelConfig(cfg, tokenizer.VocabSize), new Generator(cfg.Seed), device, cfg.Seed + 2);
        return new GptTrainer(cfg, device, tokenizer, data, model, new TrainState());
    }

    /// <summary>
    /// Continues the run saved in <paramref name="outDir"/>: same config, weights, optimizer moments, generator offsets
    /// and history. <paramref name="change"/> may alter settings that do not change the trajectory (the caller decides
    /// which: `mt train gpt --resume` allows --max-iters, --eval-interval and --log-interval).
    /// </summary>
    public static GptTrainer Resume(string outDir, Device device, Func<TrainConfig, TrainConfig>? change = null)
    {
        AtomicFile.EnsureWritableDirectory(outDir, "--out-dir");
        GptCheckpoint.RemoveStaleTemporaries(outDir);
        using var ckpt = GptCheckpoint.Load(outDir);
        var cfg = (change ?? (c => c))(ckpt.Train) with { OutDir = outDir };
        cfg.Validate();
        string text;
        try
        {
            text = ReadText(cfg.DataPath);
        }
        catch (FileNotFoundException e)
        {
            throw new UserErrorException($"the text the run in {ckpt.File.Path} trains on is gone: {e.Message}", e);
        }
        TextDataset data;
        try
        {
            data = TextDataset.FromText(text, ckpt.Tokenizer);
        }
        catch (ArgumentException e)
        {
            // The char tokenizer holds the characters of the text the run started on: this text is another one.
            throw new UserErrorException($"--data {cfg.DataPath}: the run's {ckpt.Tokenizer.Kind} tokenizer (in {ckpt.File.Path}) cannot encode it: {e.Message}", e);
        }
        data.RequireLongerThan(cfg.BlockSize, $"--data {cfg.DataPath}");
        TrainableLM model;
        using (DeviceMemory.Category(MemoryCategory.Weights)) model = ckpt.CreateModel(device);
        var trainer = new GptTrainer(cfg, device, ckpt.Tokenizer, data, model, ckpt.State) { _checkpointIter = ckpt.State.Iter };
        try
        {
            trainer.Optimizer.LoadState(ckpt.OptimizerTensors(), ckpt.State.OptimizerSteps, ckpt.File.Path);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException(e.Message, e); // a moment missing or of the wrong shape: the file's fault
        }
        return trainer;
    }

    private static string ReadText(string dataPath)
    {
        string text = File.ReadAllText(DataFiles.Find(dataPath));
        if (text.Length == 0) throw new UserErrorException($"--data {dataPath}: the file is empty");
        return text;
    }

    public int Iter => _state.Iter;
    public TrainConfig Config => _cfg;

    /// <summary>The step of the checkpoint on disk, or -1 when none has been written.</summary>
    public int CheckpointIter => _checkpointIter;

    /// <summary>
    /// Trains from the current iteration up to MaxIters, evaluating and checkpointing on the way. When
    /// <paramref name="cancel"/> fires (Ctrl-C), the step in progress finishes (an evaluation in progress is
    /// abandoned), the state after it is checkpointed, and the run returns <see cref="TrainOutcome.Interrupted"/>.
    /// </summary>
    public TrainOutcome Run(ITrainingObserver observer, CancellationToken cancel = default)
    {
        observer.OnStart(Model, _cfg, _state.Iter, Tokenizer, Data);
        var clock = Stopwatch.StartNew();
        int tokensPerIter = _cfg.BatchSize * _cfg.BlockSize * _cfg.GradAccumSteps;
        int stepsTimed = 0; // steps since the clock was last restarted
        while (true)
        {
            int it = _state.Iter;
            if (it % _cfg.EvalInterval == 0 && _state.LastEvalIter != it || it == _cfg.MaxIters && _state.LastEvalIter != it)
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
                    throw Diverged(it, $"the evaluated loss is not finite (train {train}, val {val})");
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
                observer.OnCheckpoint(it, GptCheckpoint.PathIn(_cfg.OutDir), best);
                clock.Restart(); // do not count evaluation in the step time
                stepsTimed = 0;
            }
            if (it >= _cfg.MaxIters) return TrainOutcome.Finished;
            if (cancel.IsCancellationRequested) return Interrupt(observer);

            double loss = TrainStep(it);
            double lr = Optimizer.LearningRate;
            _state = _state with { Iter = it + 1 };
            stepsTimed++;
            if (it % _cfg.LogInterval == 0 || it + 1 == _cfg.MaxIters)
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
    private TrainOutcome Interrupt(ITrainingObserver observer)
    {
        if (_checkpointIter != _state.Iter)
        {
            SaveCheckpoint(best: false);
            observer.OnCheckpoint(_state.Iter, GptCheckpoint.PathIn(_cfg.OutDir), best: false);
        }
        return TrainOutcome.Interrupted;
    }

    /// <summary>The error for a run that diverged at <paramref name="step"/>, saying which checkpoint is kept.</summary>
    private TrainingDivergedException Diverged(int step, string what)
    {
        string kept = _checkpointIter < 0
            ? "no checkpoint was written"
            : $"the last good checkpoint (step {_checkpointIter}) is kept in {GptCheckpoint.PathIn(_cfg.OutDir)}" +
              (_state.BestValIter >= 0 ? $", the best (step {_state.BestValIter}, val loss {_state.BestValLoss:F4}) in {GptCheckpoint.BestPathIn(_cfg.OutDir)}" : "");
        return new TrainingDivergedException(step,
            $"training diverged at step {step}: {what}; stopped before updating the weights, {kept}. " +
            $"Lower --lr ({_cfg.LearningRate:G4}), raise --warmup-iters ({_cfg.WarmupIters}) or set --grad-clip ({_cfg.GradClip:G4})");
    }

    /// <summary>
    /// Iteration <paramref name="it"/> of train.py's loop: the learning rate from the schedule, then one
    /// optimizer step over GradAccumSteps micro-batches (clipped, AdamW); returns the mean micro-batch
    /// loss. The micro-batches are random training batches unless <paramref name="nextBatch"/> gives them
    /// (the trajectory test feeds PyTorch's). On a GPU everything the step allocates (batch, activations,
    /// gradients) is freed when it ends (a memory scope), so after the first step the caching allocator
    /// serves every request from its cache. A loss or gradient norm that is not finite throws
    /// <see cref="TrainingDivergedException"/> before the optimizer touches the weights.
    /// </summary>
    public double TrainStep(int it, Func<(Tensor X, Tensor Y)>? nextBatch = null)
    {
        using var scope = DeviceMemory.Scope();
        Optimizer.LearningRate = _schedule.LearningRate(it);
        Model.Train();
        double total = 0;
        var parameters = Model.Parameters().ToList();
        for (int micro = 0; micro < _cfg.GradAccumSteps; micro++)
        {
            var (x, y) = nextBatch is null ? Batch(Split.Train, _batchGen) : nextBatch();
            // Gradients add up across micro-batches; scaling each one makes the sum a mean. Each runs in a memory scope
            // of its own, so accumulation holds one micro-batch's activations (MicroBatch).
            total += MicroBatch.Backward(parameters, () => Model.Loss(x, y), 1.0 / _cfg.GradAccumSteps);
        }
        foreach (var p in Model.Parameters())
            if (p.Grad is { } g) DeviceMemory.Tag(g, MemoryCategory.Grads);
        double mean = total / _cfg.GradAccumSteps;
        // The norm comes free with clipping; without it a non-finite gradient shows in the next step's loss, and the
        // evaluation before any checkpoint is checked too, so nothing non-finite reaches the disk either way.
        double norm = _cfg.GradClip > 0 ? GradClip.ClipGradNorm(Model.Parameters(), _cfg.GradClip) : 0;
        if (!double.IsFinite(mean) || !double.IsFinite(norm))
        {
            Optimizer.ZeroGrad();
            throw Diverged(it, !double.IsFinite(mean) ? $"the loss is {mean}" : $"the gradient norm is {norm} (loss {mean:F4})");
        }
        Optimizer.Step();
        Optimizer.ZeroGrad();
        return mean;
    }

    /// <summary>
    /// nanoGPT's estimate_loss at step <paramref name="step"/>: the mean loss of EvalIters batches of each split,
    /// dropout off, the batches drawn from the step's own counter range (<see cref="EvalCounterStride"/>).
    /// </summary>
    public (double Train, double Val) EstimateLoss(int step, CancellationToken cancel = default)
    {
        var gen = new Generator(_cfg.Seed + 3, (ulong)step * EvalCounterStride);
        Model.Eval();
        try
        {
            double Mean(Split split)
            {
                double sum = 0;
                for (int k = 0; k < _cfg.EvalIters; k++)
                {
                    cancel.ThrowIfCancellationRequested();
                    using var scope = DeviceMemory.Scope();
                    var (x, y) = Batch(split, gen);
                    using (GradMode.NoGrad()) sum += Model.Loss(x, y).Item();
                }
                return sum / _cfg.EvalIters;
            }
            return (Mean(Split.Train), Mean(Split.Val));
        }
        finally
        {
            Model.Train();
        }
    }

    private (Tensor X, Tensor Y) Batch(Split split, Generator gen)
    {
        var (x, y) = Data.GetBatch(split, _cfg.BatchSize, _cfg.BlockSize, gen);
        return (x.To(_device), y.To(_device));
    }

    private void SaveCheckpoint(bool best)
    {
        _state = _state with
        {
            BatchOffset = _batchGen.Offset,
            DropoutOffset = Model.DropoutGenerator.Offset,
            OptimizerSteps = Optimizer.StepCount,
        };
        GptCheckpoint.Save(_cfg.OutDir, Model, Optimizer, _cfg, _state, Tokenizer, best);
        _checkpointIter = _state.Iter;
    }
}
