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
    public int NLayer { get; init; } = 4;
    public int NHead { get; init; } = 4;
    public int NEmbd { get; init; } = 128;
    public int BlockSize { get; init; } = 64;
    public double Dropout { get; init; } = 0.0;
    public bool Bias { get; init; } = false;

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

    // ---- evaluation, logging, checkpoints ----
    public int EvalInterval { get; init; } = 250;      // also the checkpoint interval
    public int EvalIters { get; init; } = 20;
    public int LogInterval { get; init; } = 10;
    public ulong Seed { get; init; } = 1337;

    public void Validate()
    {
        void Positive(int v, string name)
        {
            if (v <= 0) throw new ArgumentOutOfRangeException(name, v, $"--{name} must be positive");
        }
        Positive(NLayer, "n-layer"); Positive(NHead, "n-head"); Positive(NEmbd, "n-embd"); Positive(BlockSize, "block-size");
        Positive(BatchSize, "batch-size"); Positive(GradAccumSteps, "grad-accum"); Positive(EvalInterval, "eval-interval");
        Positive(EvalIters, "eval-iters"); Positive(LogInterval, "log-interval");
        if (MaxIters < 0) throw new ArgumentOutOfRangeException("max-iters", MaxIters, "--max-iters must be >= 0");
        if (NEmbd % NHead != 0) throw new ArgumentException($"--n-embd {NEmbd} must be a multiple of --n-head {NHead}");
        if (LearningRate <= 0 || MinLr < 0) throw new ArgumentException($"learning rates must be positive (lr {LearningRate}, min lr {MinLr})");
        if (Dropout is < 0 or >= 1) throw new ArgumentOutOfRangeException("dropout", Dropout, "--dropout must be in [0, 1)");
    }

    public GptConfig ModelConfig(int vocabSize) => new(BlockSize, vocabSize, NLayer, NHead, NEmbd, Dropout, Bias);
}
