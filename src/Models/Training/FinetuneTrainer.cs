using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using ManagedTensor.Models.Adapters;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.IO;
using ManagedTensor.Nn;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Training;

/// <summary>
/// LoRA / QLoRA fine-tuning of any language model <see cref="ModelLoader"/> opens (`mt finetune`): the base is loaded,
/// optionally quantized (QLoRA: every Linear but lm_head in NF4 or Q4_0, multiplied by QMatMul), frozen, and given
/// adapters (<see cref="Lora.Apply"/>); AdamW holds moments for the adapters only. The loop is <see cref="GptTrainer"/>'s
/// (cosine schedule with warm-up, gradient accumulation and clipping, an evaluation of both splits every eval interval
/// from the step's own counter range, a checkpoint after each, NaN stops before the update), over the model's
/// ICausalLM.Forward instead of a TrainableLM. The base stays in eval mode (its own dropout off, as a frozen network);
/// only the adapters' dropout is on in training.
/// A checkpoint holds only what training changes: OUT/adapter_ckpt.safetensors (adapter tensors under PEFT's names,
/// AdamW moments, the config and <see cref="TrainState"/> as metadata), OUT/adapter_config.json +
/// OUT/adapter_model.safetensors (the PEFT adapter of the last evaluation) and, for the best validation loss so far,
/// OUT/best.safetensors and OUT/best/ (its PEFT adapter). --resume rebuilds the base from the config and continues exactly.
/// </summary>
public sealed class FinetuneTrainer
{
    public const string CheckpointFile = "adapter_ckpt.safetensors";
    public const string BestFile = "best.safetensors";
    public const string BestDir = "best";
    private const string OptimPrefix = "optim.";
    private const string Format = "managedtensor.lora.v1";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };

    private readonly Device _device;
    private readonly CosineSchedule _schedule;
    private readonly Generator _batchGen;
    private readonly Generator _dropoutGen;
    private TrainState _state;
    private int _checkpointIter = -1;

    public FinetuneConfig Config { get; }
    public LoadedModel Loaded { get; }
    public ICausalLM Lm => Loaded.Model;
    public Module Model { get; }
    public AdamW Optimizer { get; }
    public FinetuneData Data { get; }

    /// <summary>The Linears given a block-format weight (QLoRA), and those left float with the reason.</summary>
    public IReadOnlyList<string> QuantizedLayers { get; }
    public IReadOnlyList<string> SkippedLayers { get; }

    public IReadOnlyList<LossPoint> History => _state.History;
    public double BestValLoss => _state.BestValLoss;
    public int Iter => _state.Iter;
    public int CheckpointIter => _checkpointIter;
    public long TrainableCount => Lora.Trainable(Model).Sum(p => (long)p.Tensor.Numel);
    public long TotalCount => Model.StateDict().Values.Sum(t => (long)t.Numel);

    private FinetuneTrainer(FinetuneConfig cfg, Device device, TrainState state)
    {
        cfg.Validate();
        Config = cfg;
        _device = device;
        _state = state;
        _dropoutGen = new Generator(cfg.Seed + 2, state.DropoutOffset);
        _batchGen = new Generator(cfg.Seed + 1, state.BatchOffset);
        _schedule = new CosineSchedule(cfg.LearningRate, cfg.LearningRate / 10, cfg.WarmupIters, cfg.LrDecayIters);
        string dataPath = DataFiles.Find(cfg.DataPath);
        if (!File.Exists(dataPath)) throw new UserErrorException($"--data {cfg.DataPath}: no such file");
        using (DeviceMemory.Category(MemoryCategory.Weights))
            Loaded = ModelLoader.Open(DataFiles.Find(cfg.Model), cfg.Tokenizer is null ? null : DataFiles.Find(cfg.Tokenizer), device);
        Model = Loaded.Model as Module ?? throw new UserErrorException($"--model {cfg.Model}: a {Loaded.Model.Architecture} model is not a module tree LoRA can adapt");
        if (cfg.BlockSize > Lm.ContextLength)
            throw new UserErrorException($"--block-size {cfg.BlockSize} is longer than the model's context of {Lm.ContextLength} positions");
        var format = cfg.Template == "auto" ? ChatTemplates.Detect(Loaded.ChatTemplate) ?? ChatFormat.Plain : ChatTemplates.Parse(cfg.Template);
        Data = FinetuneData.Load(dataPath, Loaded.Tokenizer, format, cfg.BlockSize);
        Data.RequireUsable(cfg.BlockSize, $"--data {cfg.DataPath}");
        (QuantizedLayers, SkippedLayers) = cfg.QuantizeFormat is { } f ? Lora.QuantizeLinears(Model, f) : ([], []);
        try
        {
            using (DeviceMemory.Category(MemoryCategory.Weights)) Lora.Apply(Model, cfg.Lora, new Generator(cfg.Seed), _dropoutGen);
        }
        catch (ArgumentException e)
        {
            throw new UserErrorException($"--target-modules {cfg.TargetModules}: {e.Message}");
        }
        using (DeviceMemory.Category(MemoryCategory.OptimizerState))
            Optimizer = new AdamW(Lora.Trainable(Model), cfg.LearningRate, 0.9, 0.999, 1e-8, cfg.WeightDecay);
    }

    public static string PathIn(string outDir) => Path.Combine(outDir, CheckpointFile);

    /// <summary>Temporary files of writes into <paramref name="outDir"/> that a kill cut short (see <see cref="AtomicFile"/>).</summary>
    private static void RemoveStaleTemporaries(string outDir)
    {
        foreach (string name in new[] { CheckpointFile, BestFile, PeftAdapter.ConfigFile, PeftAdapter.WeightsFile, "loss.png" })
            AtomicFile.RemoveStale(Path.Combine(outDir, name));
    }

    /// <summary>A fresh run: --out-dir must be writable and hold no run (unless <paramref name="replaceExisting"/>).</summary>
    public static FinetuneTrainer Create(FinetuneConfig cfg, Device device, bool replaceExisting = false)
    {
        cfg.Validate();
        if (File.Exists(PathIn(cfg.OutDir)))
        {
            if (!replaceExisting)
                throw new UserErrorException($"--out-dir {cfg.OutDir} holds a fine-tuning run ({CheckpointFile}): --resume continues it, --force starts over, or choose another --out-dir");
            File.Delete(PathIn(cfg.OutDir));
            File.Delete(Path.Combine(cfg.OutDir, BestFile));
        }
        AtomicFile.EnsureWritableDirectory(cfg.OutDir, "--out-dir");
        RemoveStaleTemporaries(cfg.OutDir);
        if (cfg.LrDecayIters == 0) cfg = cfg with { LrDecayIters = cfg.MaxIters };
        return new FinetuneTrainer(cfg, device, new TrainState());
    }

    /// <summary>Continues the run in <paramref name="outDir"/>; <paramref name="change"/> may alter what does not change its trajectory.</summary>
    public static FinetuneTrainer Resume(string outDir, Device device, Func<FinetuneConfig, FinetuneConfig>? change = null)
    {
        string path = PathIn(outDir);
        if (!File.Exists(path)) throw new UserErrorException($"--resume: {outDir} holds no fine-tuning run ({CheckpointFile} is missing)");
        AtomicFile.EnsureWritableDirectory(outDir, "--out-dir");
        RemoveStaleTemporaries(outDir);
        using var file = SafeTensors.Open(path);
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v : throw new InvalidDataException($"{path}: metadata '{key}' is missing");
        if (Meta("format") != Format) throw new InvalidDataException($"{path}: format '{Meta("format")}', expected {Format}");
        T Parse<T>(string key)
        {
            try
            {
                return JsonSerializer.Deserialize<T>(Meta(key), Json) ?? throw new InvalidDataException($"{path}: metadata '{key}' is null");
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}: metadata '{key}' is not a valid {typeof(T).Name} ({e.Message})", e);
            }
        }
        var state = Parse<TrainState>("train_state");
        state.Validate(path);
        var cfg = (change ?? (c => c))(Parse<FinetuneConfig>("finetune_config")) with { OutDir = outDir };
        var trainer = new FinetuneTrainer(cfg, device, state) { _checkpointIter = state.Iter };
        var tensors = file.Tensors.ToDictionary(t => t.Name, t => file.Load(t.Name));
        PeftAdapter.LoadTensors(path, tensors.Where(kv => !kv.Key.StartsWith(OptimPrefix, StringComparison.Ordinal)).ToDictionary(), trainer.Model, cfg.Model);
        try
        {
            trainer.Optimizer.LoadState(tensors.Where(kv => kv.Key.StartsWith(OptimPrefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[OptimPrefix.Length..], kv => kv.Value),
                state.OptimizerSteps, path);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
        return trainer;
    }

    /// <summary>Trains up to MaxIters with evaluations and checkpoints; Ctrl-C (<paramref name="cancel"/>) checkpoints the step reached.</summary>
    public TrainOutcome Run(ITrainStepObserver observer, CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        int tokensPerIter = Config.BatchSize * Config.BlockSize * Config.GradAccumSteps;
        int stepsTimed = 0;
        while (true)
        {
            int it = _state.Iter;
            if ((it % Config.EvalInterval == 0 || it == Config.MaxIters) && _state.LastEvalIter != it)
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
                if (!double.IsFinite(train) || !double.IsFinite(val)) throw Diverged(it, $"the evaluated loss is not finite (train {train}, val {val})");
                bool best = val < _state.BestValLoss;
                _state = _state with { LastEvalIter = it, BestValLoss = best ? val : _state.BestValLoss, BestValIter = best ? it : _state.BestValIter };
                _state.History.Add(new LossPoint(it, train, val));
                observer.OnEval(it, train, val);
                SaveCheckpoint(best);
                observer.OnCheckpoint(it, PathIn(Config.OutDir), best);
                clock.Restart();
                stepsTimed = 0;
            }
            if (it >= Config.MaxIters) return TrainOutcome.Finished;
            if (cancel.IsCancellationRequested) return Interrupt(observer);
            double loss = TrainStep(it);
            double lr = Optimizer.LearningRate;
            _state = _state with { Iter = it + 1 };
            stepsTimed++;
            if (it % Config.LogInterval == 0 || it + 1 == Config.MaxIters)
            {
                double ms = clock.Elapsed.TotalMilliseconds / stepsTimed;
                _state.History.Add(new LossPoint(it, loss));
                observer.OnStep(it, loss, lr, tokensPerIter / ms * 1000, ms);
                clock.Restart();
                stepsTimed = 0;
            }
        }
    }

    private TrainOutcome Interrupt(ITrainStepObserver observer)
    {
        if (_checkpointIter != _state.Iter)
        {
            SaveCheckpoint(best: false);
            observer.OnCheckpoint(_state.Iter, PathIn(Config.OutDir), best: false);
        }
        return TrainOutcome.Interrupted;
    }

    private TrainingDivergedException Diverged(int step, string what) => new(step,
        $"fine-tuning diverged at step {step}: {what}; stopped before updating the adapters" +
        (_checkpointIter < 0 ? "" : $", the last good checkpoint (step {_checkpointIter}) is kept in {PathIn(Config.OutDir)}") +
        $". Lower --lr ({Config.LearningRate:G4}) or set --grad-clip");

    /// <summary>The mean cross-entropy of a batch over its targets (-1 ignored: prompts and padding).</summary>
    private Tensor Loss(Tensor x, Tensor y) => Functional.CrossEntropy(Lm.Forward(x, cache: null, allPositions: true), y, ignoreIndex: -1);

    /// <summary>One optimizer step over GradAccumSteps random training micro-batches; returns the mean loss.</summary>
    public double TrainStep(int it)
    {
        using var scope = DeviceMemory.Scope();
        Optimizer.LearningRate = _schedule.LearningRate(it);
        Lora.SetTraining(Model, true);
        double total = 0;
        for (int micro = 0; micro < Config.GradAccumSteps; micro++)
        {
            var (x, y) = Batch(Split.Train, _batchGen);
            var loss = Loss(x, y);
            (Config.GradAccumSteps == 1 ? loss : loss.MulScalar(1.0 / Config.GradAccumSteps)).Backward();
            total += loss.Item();
        }
        var trainable = Lora.Trainable(Model).Select(p => p.Tensor).ToList();
        foreach (var p in trainable)
            if (p.Grad is { } g) DeviceMemory.Tag(g, MemoryCategory.Grads);
        double mean = total / Config.GradAccumSteps;
        double norm = Config.GradClip > 0 ? GradClip.ClipGradNorm(trainable, Config.GradClip) : 0;
        if (!double.IsFinite(mean) || !double.IsFinite(norm))
        {
            Optimizer.ZeroGrad();
            throw Diverged(it, !double.IsFinite(mean) ? $"the loss is {mean}" : $"the gradient norm is {norm} (loss {mean:F4})");
        }
        Optimizer.Step();
        Optimizer.ZeroGrad();
        return mean;
    }

    /// <summary>Mean loss of EvalIters batches of each split, adapters' dropout off, batches from the step's own counters.</summary>
    public (double Train, double Val) EstimateLoss(int step, CancellationToken cancel = default)
    {
        var gen = new Generator(Config.Seed + 3, (ulong)step * GptTrainer.EvalCounterStride);
        Lora.SetTraining(Model, false);
        double Mean(Split split)
        {
            double sum = 0;
            for (int k = 0; k < Config.EvalIters; k++)
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = DeviceMemory.Scope();
                var (x, y) = Batch(split, gen);
                using (GradMode.NoGrad()) sum += Loss(x, y).Item();
            }
            return sum / Config.EvalIters;
        }
        return (Mean(Split.Train), Mean(Split.Val));
    }

    private (Tensor X, Tensor Y) Batch(Split split, Generator gen)
    {
        var (x, y) = Data.GetBatch(split, Config.BatchSize, Config.BlockSize, gen);
        return (x.To(_device), y.To(_device));
    }

    private void SaveCheckpoint(bool best)
    {
        _state = _state with { BatchOffset = _batchGen.Offset, DropoutOffset = _dropoutGen.Offset, OptimizerSteps = Optimizer.StepCount };
        var tensors = PeftAdapter.Tensors(Model)
            .Concat(Optimizer.StateTensors().Select(kv => new KeyValuePair<string, Tensor>(OptimPrefix + kv.Key, kv.Value)));
        var metadata = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["finetune_config"] = JsonSerializer.Serialize(Config, Json),
            ["train_state"] = JsonSerializer.Serialize(_state, Json),
        };
        string path = PathIn(Config.OutDir);
        SafeTensors.Save(path, tensors, metadata);
        PeftAdapter.Save(Config.OutDir, Model, Config.Lora, Config.Model);
        if (best)
        {
            AtomicFile.Copy(path, Path.Combine(Config.OutDir, BestFile));
            PeftAdapter.Save(Path.Combine(Config.OutDir, BestDir), Model, Config.Lora, Config.Model);
        }
        _checkpointIter = _state.Iter;
    }
}
