using ManagedTensor.Nn;

namespace ManagedTensor.Models.Training;

/// <summary>
/// Everything a LoRA / QLoRA fine-tuning run is defined by (`mt finetune`): the base model, the data, the adapter recipe
/// (PEFT's names: r, lora_alpha, lora_dropout, target_modules), the base's quantization (QLoRA) and the optimization.
/// Stored in every adapter checkpoint, so --resume continues the same run. LrDecayIters 0 means MaxIters (fixed when
/// the run starts, so a longer --max-iters on resume extends the run without bending the schedule it had).
/// </summary>
public sealed record FinetuneConfig
{
    public string Model { get; init; } = "data/stories260K/stories260K.bin";
    public string? Tokenizer { get; init; }
    public string DataPath { get; init; } = "data/tinyshakespeare.txt";
    public string Template { get; init; } = "auto";   // chat template for JSONL messages: auto (the model's) or a name
    public string OutDir { get; init; } = "out-finetune";

    // ---- adapter ----
    public int LoraR { get; init; } = 8;
    public double LoraAlpha { get; init; } = 16;
    public double LoraDropout { get; init; } = 0.05;
    public string TargetModules { get; init; } = LoraConfig.AllLinear;
    public string Quantize { get; init; } = "none";      // none, nf4, q4_0 (QLoRA's base)

    // ---- optimization ----
    public int BatchSize { get; init; } = 8;
    public int BlockSize { get; init; } = 128;
    public int GradAccumSteps { get; init; } = 1;
    public int MaxIters { get; init; } = 200;
    public double LearningRate { get; init; } = 2e-4;
    public int WarmupIters { get; init; } = 10;
    public int LrDecayIters { get; init; }
    public double WeightDecay { get; init; } = 0.0;
    public double GradClip { get; init; } = 1.0;
    /// <summary>adamw, adamw8bit or offload (<see cref="MixedPrecision.OptimKinds"/>).</summary>
    public string Optim { get; init; } = "adamw";
    /// <summary>off, bf16 or fp16: matmuls and attention in 16 bits, float32 master weights and adapters (<see cref="MixedPrecision"/>).</summary>
    public string Autocast { get; init; } = "off";

    // ---- evaluation, logging ----
    public int EvalInterval { get; init; } = 50;
    public int EvalIters { get; init; } = 10;
    public int LogInterval { get; init; } = 10;
    public ulong Seed { get; init; } = 1337;

    public LoraConfig Lora => new(LoraR, LoraAlpha, LoraDropout, LoraConfig.ParseTargets(TargetModules));

    /// <summary>The block format of --quantize, or null for a float base.</summary>
    public DType? QuantizeFormat => Quantize.ToLowerInvariant() switch
    {
        "none" => null,
        "nf4" => DType.NF4,
        "q4_0" => DType.Q4_0,
        "q8_0" => DType.Q8_0,
        _ => throw new UserErrorException($"--quantize '{Quantize}' is not a base format: none, nf4 or q4_0 (q8_0 also works)"),
    };

    /// <summary>The settings of the shared training loop.</summary>
    public LoopSettings Loop() => new(BatchSize, BlockSize, GradAccumSteps, MaxIters, EvalInterval, EvalIters, LogInterval, GradClip, Seed, Autocast);

    /// <summary>Throws a <see cref="UserErrorException"/> naming the option for the first setting that cannot make a run.</summary>
    public void Validate()
    {
        static void AtLeast(long v, long min, string option)
        {
            if (v < min) throw new UserErrorException($"--{option} must be at least {min} (got {v})");
        }
        AtLeast(LoraR, 1, "lora-r");
        AtLeast(BatchSize, 1, "batch-size"); AtLeast(BlockSize, 1, "block-size"); AtLeast(GradAccumSteps, 1, "grad-accum");
        AtLeast(MaxIters, 0, "iters"); AtLeast(WarmupIters, 0, "warmup-iters"); AtLeast(LrDecayIters, 0, "lr-decay-iters");
        AtLeast(EvalInterval, 1, "eval-interval"); AtLeast(EvalIters, 1, "eval-iters"); AtLeast(LogInterval, 1, "log-interval");
        if (!double.IsFinite(LoraAlpha) || LoraAlpha <= 0) throw new UserErrorException($"--lora-alpha must be a finite number > 0 (got {LoraAlpha:R})");
        if (!double.IsFinite(LoraDropout) || LoraDropout is < 0 or >= 1) throw new UserErrorException($"--lora-dropout must be in [0, 1) (got {LoraDropout:R})");
        if (!double.IsFinite(LearningRate) || LearningRate <= 0) throw new UserErrorException($"--lr must be a finite number > 0 (got {LearningRate:R})");
        if (!double.IsFinite(WeightDecay) || WeightDecay < 0) throw new UserErrorException($"--weight-decay must be a finite number >= 0 (got {WeightDecay:R})");
        if (!double.IsFinite(GradClip) || GradClip < 0) throw new UserErrorException($"--grad-clip must be a finite number >= 0 (got {GradClip:R})");
        if (LoraConfig.ParseTargets(TargetModules).Count == 0) throw new UserErrorException("--target-modules must name Linear layers (q_proj,v_proj,...) or be all-linear");
        MixedPrecision.ValidateOptim(Optim);
        _ = MixedPrecision.AutocastDType(Autocast);
        if (string.IsNullOrWhiteSpace(DataPath)) throw new UserErrorException("--data must name a text or JSONL file");
        if (string.IsNullOrWhiteSpace(OutDir)) throw new UserErrorException("--out-dir must name a directory");
        _ = QuantizeFormat;
    }
}
