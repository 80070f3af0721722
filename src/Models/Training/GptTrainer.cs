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
/// checkpoint after each evaluation and at the end. The loop itself is <see cref="TrainingLoop"/>, shared with
/// <see cref="FinetuneTrainer"/> (autocast, loss scaling and the --optim choice live there). A run is a pure function of its <see cref="TrainConfig"/>:
/// batches, dropout masks and evaluation batches each come from their own seeded generator, and every
/// generator offset is in the checkpoint, so a resumed run continues with the same losses it would have
/// had without the interruption.
/// Nothing bad is written: a loss or gradient norm that is not finite stops the run before the step's update
/// and before any checkpoint (<see cref="TrainingDivergedException"/>), and a cancelled run checkpoints the step
/// it reached. Everything a run needs (a writable --out-dir, text longer than the block) is checked before the
/// model is built.
/// </summary>
public sealed class GptTrainer : ITrainee
{
    private readonly TrainConfig _cfg;
    private readonly Device _device;
    private readonly TrainingLoop _loop;

    public TrainableLM Model { get; }
    public IStatefulOptimizer Optimizer => _loop.Optimizer;
    public TrainingLoop Loop => _loop;
    public ITokenizer Tokenizer { get; }
    public TextDataset Data { get; }
    public IReadOnlyList<LossPoint> History => _loop.State.History;
    public double BestValLoss => _loop.State.BestValLoss;

    private GptTrainer(TrainConfig cfg, Device device, ITokenizer tokenizer, TextDataset data, TrainableLM model, TrainState state, bool resumed)
    {
        _cfg = cfg;
        _device = device;
        Tokenizer = tokenizer;
        Data = data;
        Model = model;
        if (cfg.CheckpointActivations)
        {
            if (model is not IActivationCheckpointing checkpointed)
                throw new UserErrorException($"--checkpoint-activations: the {cfg.Arch} model has no per-block activation checkpointing (gpt has)");
            checkpointed.CheckpointActivations = true;
        }
        var optimizer = MixedPrecision.CreateOptimizer(cfg.Optim, model.NamedParameters(), cfg.LearningRate, cfg.Beta1, cfg.Beta2, cfg.WeightDecay);
        _loop = new TrainingLoop(cfg.Loop(), state, optimizer, new CosineSchedule(cfg.LearningRate, cfg.MinLr, cfg.WarmupIters, cfg.LrDecayIters), this, resumed);
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
        return new GptTrainer(cfg, device, tokenizer, data, model, new TrainState(), resumed: false);
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
        var trainer = new GptTrainer(cfg, device, ckpt.Tokenizer, data, model, ckpt.State, resumed: true);
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

    public int Iter => _loop.State.Iter;
    public TrainConfig Config => _cfg;

    /// <summary>The step of the checkpoint on disk, or -1 when none has been written.</summary>
    public int CheckpointIter => _loop.CheckpointIter;

    /// <summary>Trains up to MaxIters (<see cref="TrainingLoop.Run"/>); Ctrl-C (<paramref name="cancel"/>) checkpoints the step reached.</summary>
    public TrainOutcome Run(ITrainingObserver observer, CancellationToken cancel = default)
    {
        observer.OnStart(Model, _cfg, Iter, Tokenizer, Data);
        return _loop.Run(observer, cancel);
    }

    /// <summary>One optimizer step (<see cref="TrainingLoop.TrainStep"/>); <paramref name="nextBatch"/> replaces the random batches.</summary>
    public double TrainStep(int it, Func<(Tensor X, Tensor Y)>? nextBatch = null) => _loop.TrainStep(it, nextBatch);

    /// <summary>nanoGPT's estimate_loss at step <paramref name="step"/> (<see cref="TrainingLoop.EstimateLoss"/>).</summary>
    public (double Train, double Val) EstimateLoss(int step, CancellationToken cancel = default) => _loop.EstimateLoss(step, cancel);

    // ---- what the loop needs (ITrainee) ----

    Tensor ITrainee.Loss(Tensor x, Tensor y) => Model.Loss(x, y);

    void ITrainee.SetTraining(bool training)
    {
        if (training) Model.Train();
        else Model.Eval();
    }

    (Tensor X, Tensor Y) ITrainee.Batch(Split split, Generator gen)
    {
        var (x, y) = Data.GetBatch(split, _cfg.BatchSize, _cfg.BlockSize, gen);
        return (x.To(_device), y.To(_device));
    }

    IReadOnlyList<Tensor> ITrainee.TrainedParameters => Model.Parameters().ToList();
    ulong ITrainee.DropoutOffset => Model.DropoutGenerator.Offset;
    string ITrainee.CheckpointPath => GptCheckpoint.PathIn(_cfg.OutDir);

    void ITrainee.WriteCheckpoint(TrainState state, bool best) => GptCheckpoint.Save(_cfg.OutDir, Model, Optimizer, _cfg, state, Tokenizer, best);

    TrainingDivergedException ITrainee.Diverged(int step, string what, int checkpointIter, TrainState state)
    {
        string kept = checkpointIter < 0
            ? "no checkpoint was written"
            : $"the last good checkpoint (step {checkpointIter}) is kept in {GptCheckpoint.PathIn(_cfg.OutDir)}" +
              (state.BestValIter >= 0 ? $", the best (step {state.BestValIter}, val loss {state.BestValLoss:F4}) in {GptCheckpoint.BestPathIn(_cfg.OutDir)}" : "");
        return new TrainingDivergedException(step,
            $"training diverged at step {step}: {what}; stopped before updating the weights, {kept}. " +
            $"Lower --lr ({_cfg.LearningRate:G4}), raise --warmup-iters ({_cfg.WarmupIters}) or set --grad-clip ({_cfg.GradClip:G4})");
    }
}
