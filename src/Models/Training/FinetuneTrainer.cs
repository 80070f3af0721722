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
/// adapters (<see cref="Lora.Apply"/>); the optimizer (--optim) holds state for the adapters only. The loop is
/// <see cref="TrainingLoop"/>, shared with <see cref="GptTrainer"/> (cosine schedule with warm-up, gradient accumulation
/// and clipping, an evaluation of both splits every eval interval from the step's own counter range, a checkpoint after
/// each, NaN stops before the update, --autocast), over the model's ICausalLM.Forward instead of a TrainableLM. The base stays in eval mode (its own dropout off, as a frozen network);
/// only the adapters' dropout is on in training.
/// A checkpoint holds only what training changes: OUT/adapter_ckpt.safetensors (adapter tensors under PEFT's names,
/// AdamW moments, the config and <see cref="TrainState"/> as metadata), OUT/adapter_config.json +
/// OUT/adapter_model.safetensors (the PEFT adapter of the last evaluation) and, for the best validation loss so far,
/// OUT/best.safetensors and OUT/best/ (its PEFT adapter). --resume rebuilds the base from the config and continues exactly.
/// </summary>
public sealed class FinetuneTrainer : ITrainee
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
    private readonly Generator _dropoutGen;
    private readonly TrainingLoop _loop;

    public FinetuneConfig Config { get; }
    public LoadedModel Loaded { get; }
    public ICausalLM Lm => Loaded.Model;
    public Module Model { get; }
    public IStatefulOptimizer Optimizer => _loop.Optimizer;
    public TrainingLoop Loop => _loop;
    public FinetuneData Data { get; }

    /// <summary>The Linears given a block-format weight (QLoRA), and those left float with the reason.</summary>
    public IReadOnlyList<string> QuantizedLayers { get; }
    public IReadOnlyList<string> SkippedLayers { get; }

    public IReadOnlyList<LossPoint> History => _loop.State.History;
    public double BestValLoss => _loop.State.BestValLoss;
    public int Iter => _loop.State.Iter;
    public int CheckpointIter => _loop.CheckpointIter;
    public long TrainableCount => Lora.Trainable(Model).Sum(p => (long)p.Tensor.Numel);
    public long TotalCount => Model.StateDict().Values.Sum(t => (long)t.Numel);

    private FinetuneTrainer(FinetuneConfig cfg, Device device, TrainState state, bool resumed)
    {
        cfg.Validate();
        Config = cfg;
        _device = device;
        _dropoutGen = new Generator(cfg.Seed + 2, state.DropoutOffset);
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
        var optimizer = MixedPrecision.CreateOptimizer(cfg.Optim, Lora.Trainable(Model), cfg.LearningRate, 0.9, 0.999, cfg.WeightDecay);
        var schedule = new CosineSchedule(cfg.LearningRate, cfg.LearningRate / 10, cfg.WarmupIters, cfg.LrDecayIters);
        _loop = new TrainingLoop(cfg.Loop(), state, optimizer, schedule, this, resumed);
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
        return new FinetuneTrainer(cfg, device, new TrainState(), resumed: false);
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
        var trainer = new FinetuneTrainer(cfg, device, state, resumed: true);
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

    /// <summary>Trains up to MaxIters with evaluations and checkpoints (<see cref="TrainingLoop.Run"/>); Ctrl-C (<paramref name="cancel"/>) checkpoints the step reached.</summary>
    public TrainOutcome Run(ITrainStepObserver observer, CancellationToken cancel = default) => _loop.Run(observer, cancel);

    /// <summary>One optimizer step over GradAccumSteps random training micro-batches; returns the mean loss.</summary>
    public double TrainStep(int it) => _loop.TrainStep(it);

    /// <summary>Mean loss of EvalIters batches of each split, adapters' dropout off, batches from the step's own counters.</summary>
    public (double Train, double Val) EstimateLoss(int step, CancellationToken cancel = default) => _loop.EstimateLoss(step, cancel);

    // ---- what the loop needs (ITrainee) ----

    /// <summary>The mean cross-entropy of a batch over its targets (-1 ignored: prompts and padding).</summary>
    Tensor ITrainee.Loss(Tensor x, Tensor y) => Functional.CrossEntropy(Lm.Forward(x, cache: null, allPositions: true), y, ignoreIndex: -1);

    /// <summary>The base stays in eval mode; only the adapters' dropout follows training.</summary>
    void ITrainee.SetTraining(bool training) => Lora.SetTraining(Model, training);

    (Tensor X, Tensor Y) ITrainee.Batch(Split split, Generator gen)
    {
        var (x, y) = Data.GetBatch(split, Config.BatchSize, Config.BlockSize, gen);
        return (x.To(_device), y.To(_device));
    }

    IReadOnlyList<Tensor> ITrainee.TrainedParameters => Lora.Trainable(Model).Select(p => p.Tensor).ToList();
    ulong ITrainee.DropoutOffset => _dropoutGen.Offset;
    string ITrainee.CheckpointPath => PathIn(Config.OutDir);

    TrainingDivergedException ITrainee.Diverged(int step, string what, int checkpointIter, TrainState state) => new(step,
        $"fine-tuning diverged at step {step}: {what}; stopped before updating the adapters" +
        (checkpointIter < 0 ? "" : $", the last good checkpoint (step {checkpointIter}) is kept in {PathIn(Config.OutDir)}") +
        $". Lower --lr ({Config.LearningRate:G4}) or set --grad-clip");

    void ITrainee.WriteCheckpoint(TrainState state, bool best)
    {
        var tensors = PeftAdapter.Tensors(Model)
            .Concat(Optimizer.StateTensors().Select(kv => new KeyValuePair<string, Tensor>(OptimPrefix + kv.Key, kv.Value)));
        var metadata = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["finetune_config"] = JsonSerializer.Serialize(Config, Json),
            ["train_state"] = JsonSerializer.Serialize(state, Json),
        };
        string path = PathIn(Config.OutDir);
        SafeTensors.Save(path, tensors, metadata);
        PeftAdapter.Save(Config.OutDir, Model, Config.Lora, Config.Model);
        if (best)
        {
            AtomicFile.Copy(path, Path.Combine(Config.OutDir, BestFile));
            PeftAdapter.Save(Path.Combine(Config.OutDir, BestDir), Model, Config.Lora, Config.Model);
        }
    }
}
