namespace ManagedTensor.Models.Planning;

/// <summary>
/// How a model is trained, as far as memory goes. <see cref="LoraRank"/> 0 is full fine-tuning (every float weight trained);
/// r &gt; 0 trains LoRA adapters of rank r on every block matrix (q, k, v, o, gate, up, down; c_attn, c_proj, c_fc) with the
/// base frozen. <see cref="MatrixFormat"/> is the block matrices' format (a float dtype, or a block format such as NF4 for
/// QLoRA, frozen); embeddings and the head are in <see cref="FloatDType"/>; norm weights are float32, as the models keep them.
/// <see cref="Autocast"/> models bf16 mixed precision with float32 master weights as the engine's autocast lays it out
/// (<see cref="ManagedTensor.Autocast"/>, `mt train --autocast`), which is PyTorch's: 16-bit matmul and attention outputs,
/// a float32 residual stream and norms, and the casts between them (<see cref="EngineActivations"/>), held within 10% of the
/// allocator's measured peak (tests/Planning/MeasuredPeakTests.cs).
/// </summary>
public sealed record PlanRecipe
{
    public int LoraRank { get; init; }
    /// <summary>Dropout on the adapters' input (PEFT's lora_dropout &gt; 0; `mt finetune`'s default 0.05): its masks are activations.</summary>
    public bool LoraDropout { get; init; }
    public DType MatrixFormat { get; init; } = DType.F32;
    public DType FloatDType { get; init; } = DType.F32;
    public int Batch { get; init; } = 1;
    public int Seq { get; init; } = 512;
    public int GradAccum { get; init; } = 1;
    public bool Checkpointing { get; init; }
    /// <summary>Optimizer moments in host memory, updated on the CPU (ZeRO-Offload's optimizer part).</summary>
    public bool OptimizerOffload { get; init; }
    /// <summary>8-bit AdamW: moments as one byte per value plus a float32 scale per block of <see cref="Optimizer8BitBlock"/>.</summary>
    public bool Optimizer8Bit { get; init; }
    public bool Autocast { get; init; }
    /// <summary>Device memory the runtime takes before any tensor (CUDA context and libraries); 0 for the CPU accelerator.</summary>
    public long RuntimeReserve { get; init; }

    public const int Optimizer8BitBlock = 2048;

    /// <summary>The CUDA context of a process that has loaded its kernels, as nvidia-smi shows it (about 0.5 GB).</summary>
    public const long CudaContextBytes = 500L << 20;

    public bool Lora => LoraRank > 0;

    /// <summary>
    /// Whether a block matrix with <paramref name="inFeatures"/> columns is held in <see cref="MatrixFormat"/>: a block
    /// format needs whole blocks per row, so a narrower or odd width stays float, as `mt finetune --quantize` leaves it
    /// (<see cref="ManagedTensor.Nn.Lora.QuantizeLinears"/>; stories260K's down_proj, 172 wide, is one).
    /// </summary>
    public bool Quantizes(long inFeatures) =>
        MatrixFormat.IsQuantized() && inFeatures % ManagedTensor.Quant.BlockFormats.Get(MatrixFormat).BlockSize == 0;

    /// <summary>"full", "lora:R" or "qlora:R" (NF4 matrices) with <paramref name="dtype"/> weights.</summary>
    public static PlanRecipe Parse(string method, DType dtype)
    {
        string m = method.Trim().ToLowerInvariant();
        if (m == "full") return new PlanRecipe { MatrixFormat = dtype, FloatDType = dtype };
        var parts = m.Split(':');
        if (parts.Length == 2 && parts[0] is "lora" or "qlora" && int.TryParse(parts[1], out int r) && r > 0)
            return new PlanRecipe { LoraRank = r, MatrixFormat = parts[0] == "qlora" ? DType.NF4 : dtype, FloatDType = dtype };
        throw new UserErrorException($"--recipe '{method}': expected full, lora:R or qlora:R with a rank R >= 1 (lora:64)");
    }

    /// <summary>"full bf16", "LoRA r=64 bf16", "QLoRA r=64 (NF4) bf16".</summary>
    public string Describe()
    {
        string method = !Lora ? "full" : MatrixFormat.IsQuantized() ? $"QLoRA r={LoraRank} ({MatrixFormat})" : $"LoRA r={LoraRank}";
        if (!Lora && MatrixFormat.IsQuantized()) method = $"full (frozen {MatrixFormat} matrices)";
        return $"{method} {FloatDType.ToString().ToLowerInvariant()}, batch {Batch} x seq {Seq}, grad-accum {GradAccum}" +
               (Checkpointing ? ", checkpointing" : "") + (Optimizer8Bit ? ", 8-bit AdamW" : "") + (OptimizerOffload ? ", optimizer offload" : "") +
               (Autocast ? ", bf16 autocast" : "") + (Lora && LoraDropout ? ", adapter dropout" : "");
    }
}
