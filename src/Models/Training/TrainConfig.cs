namespace ManagedTensor.Models.Training;

/// <summary>
/// Everything a GPT training run is defined by. The defaults are nanoGPT's CPU recipe for character-level
/// tiny Shakespeare (README of nanoGPT: 4 layers, 4 heads, 128 wide, block 64, batch 12, 2000 iterations,
/// lr 1e-3 cosine to 1e-4 after 100 warm-up steps, dropout 0, eval_iters 20), which reaches a val loss of
/// about 1.88 in a few minutes on a laptop CPU. Stored in every checkpoint, so a resume continues the same run.
/// </summary>
public sealed record TrainConfig
{
    // ---- data ----
    public string DataPath { get; init; } = "data/tinyshakespeare.txt";
    public string Tokenizer { get; init; } = "char";   // "char" or "gpt2"
    public string OutDir { get; init; } = "out-shakespeare-char";

    // ---- model ----
    /// <summary>The architecture (<see cref="Architectures"/>); checkpoints written before it existed are GPT's.</summary>
    public string Arch { get; init; } = "gpt";
    public int NLayer { get; init; } = 4;
    public int NHead { get; init; } = 4;
    public int NEmbd { get; init; } = 128;
    public int BlockSize { get; init; } = 64;
    public double Dropout { get; init; } = 0.0;
    public bool Bias { get; init; } = false;
    // Recurrent architectures' sizes (Mamba: state size, conv width, expansion; RWKV: head size); others ignore them.
    public int DState { get; init; } = 16;
    public int DConv { get; init; } = 4;
    public int Expand { get; init; } = 2;
    public int HeadSize { get; init; } = 32;
    // Mixture of experts: experts per layer and experts per token; others ignore them.
    public int Experts { get; init; } = 4;
    public int TopK { get; init; } = 2;

    // ---- optimization ----
    public int BatchSize { get; init; } = 12;
    public int GradAccumSteps { get; init; } = 1;
    public int MaxIters { get; init; } = 2000;
    public double LearningRate { get; init; } = 1e-3;
    public double MinLr { get; init; } = 1e-4;
    public int WarmupIters { get; init; } = 100;
    public int LrDecayIters { get; init; } = 2000;
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.99;
    public double GradClip { get; init; } = 1.0;       // 0 disables clipping
    /// <summary>Recompute each block's activations in the backward pass (<see cref="IActivationCheckpointing"/>): same gradients, less memory.</summary>
    public bool CheckpointActivations { get; init; }
    /// <summary>adamw, adamw8bit or offload (<see cref="MixedPrecision.OptimKinds"/>).</summary>
    public string Optim { get; init; } = "adamw";
    /// <summary>off, bf16 or fp16: matmuls and attention in 16 bits, float32 master weights (<see cref="MixedPrecision"/>).</summary>
    public string Autocast { get; init; } = "off";

    // ---- evaluation, logging, checkpoints ----
    public int EvalInterval { get; init; } = 250;      // also the checkpoint interval
    public int EvalIters { get; init; } = 20;
    public int LogInterval { get; init; } = 10;
    public ulong Seed { get; init; } = 1337;

    /// <summary>
    /// Throws a <see cref="UserErrorException"/> naming the option and its value for the first setting that cannot
    /// make a run. Every float must be finite: NaN compares false with everything, so "lr &lt;= 0" alone lets
    /// --lr NaN through and the run trains on NaN.
    /// </summary>
    public void Validate()
    {
        static void AtLeast(long v, long min, string option)
        {
            if (v < min) throw new UserErrorException($"--{option} must be at least {min} (got {v})");
        }
        static void In(double v, string option, double min, double max = double.PositiveInfinity, bool minOpen = false, bool maxOpen = false)
        {
            bool ok = double.IsFinite(v) && (minOpen ? v > min : v >= min) && (maxOpen ? v < max : v <= max);
            if (ok) return;
            string range = double.IsPositiveInfinity(max) ? $"a finite number {(minOpen ? ">" : ">=")} {min:R}" : $"in {(minOpen ? "(" : "[")}{min:R}, {max:R}{(maxOpen ? ")" : "]")}";
            throw new UserErrorException($"--{option} must be {range} (got {v:R})");
        }
        AtLeast(NLayer, 1, "n-layer"); AtLeast(NHead, 1, "n-head"); AtLeast(NEmbd, 1, "n-embd"); AtLeast(BlockSize, 1, "block-size");
        AtLeast(BatchSize, 1, "batch-size"); AtLeast(GradAccumSteps, 1, "grad-accum"); AtLeast(EvalInterval, 1, "eval-interval");
        AtLeast(EvalIters, 1, "eval-iters"); AtLeast(LogInterval, 1, "log-interval"); AtLeast(MaxIters, 0, "max-iters");
        AtLeast(WarmupIters, 0, "warmup-iters"); AtLeast(LrDecayIters, 0, "lr-decay-iters");
        AtLeast(DState, 1, "d-state"); AtLeast(DConv, 1, "d-conv"); AtLeast(Expand, 1, "expand"); AtLeast(HeadSize, 1, "head-size");
        AtLeast(Experts, 1, "experts"); AtLeast(TopK, 1, "top-k");
        Architectures.Get(Arch).Validate?.Invoke(this);
        In(LearningRate, "lr", 0, minOpen: true);
        In(MinLr, "min-lr", 0);
        In(WeightDecay, "weight-decay", 0);
        In(Beta1, "beta1", 0, 1, maxOpen: true);
        In(Beta2, "beta2", 0, 1, maxOpen: true);
        In(GradClip, "grad-clip", 0);
        In(Dropout, "dropout", 0, 1, maxOpen: true);
        MixedPrecision.ValidateOptim(Optim);
        _ = MixedPrecision.AutocastDType(Autocast);
        if (string.IsNullOrWhiteSpace(DataPath)) throw new UserErrorException("--data must name a text file");
        if (string.IsNullOrWhiteSpace(OutDir)) throw new UserErrorException("--out-dir must name a directory");
        if (!Data.Tokenizers.Kinds.Contains(Tokenizer))
            throw new UserErrorException($"--tokenizer '{Tokenizer}' is not a tokenizer: {string.Join(" or ", Data.Tokenizers.Kinds)}");
        if ((long)BatchSize * EvalIters * GptTrainer.CountersPerBatchRow > (long)GptTrainer.EvalCounterStride)
            throw new UserErrorException($"--batch-size {BatchSize} times --eval-iters {EvalIters} is more than an evaluation can draw (at most {GptTrainer.EvalCounterStride / GptTrainer.CountersPerBatchRow:N0} rows)");
    }

    /// <summary>The settings of the shared training loop.</summary>
    public LoopSettings Loop() => new(BatchSize, BlockSize, GradAccumSteps, MaxIters, EvalInterval, EvalIters, LogInterval, GradClip, Seed, Autocast);

    public GptConfig ModelConfig(int vocabSize) => new(BlockSize, vocabSize, NLayer, NHead, NEmbd, Dropout, Bias);
}
