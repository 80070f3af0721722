using ManagedTensor.Quant;

namespace ManagedTensor.Nn;

/// <summary>
/// LoRA on a Linear (Hu et al. 2021, as Hugging Face PEFT's LoraLayer): the frozen W (float, or a block format through
/// QMatMul, which is QLoRA) plus a trainable low-rank update,
///   y = x W^T + b + (alpha / r) * B A dropout(x)        A (r, in), B (out, r)
/// A starts as PyTorch's kaiming_uniform(a = sqrt 5), U(+-1/sqrt(in)), and B at zero (PEFT's init), so the adapted layer
/// first computes exactly what the base does. A and B are child Linears called lora_A and lora_B, so their state-dict
/// names are PEFT's ("...q_proj.lora_A.weight"). They are float64 for a float64 base (gradient checks), else float32.
/// </summary>
public sealed partial class Linear
{
    private Dropout? _loraDropout;

    /// <summary>LoRA's down-projection A (r, in), or null without an adapter.</summary>
    public Linear? LoraA { get; private set; }

    /// <summary>LoRA's up-projection B (out, r), or null without an adapter.</summary>
    public Linear? LoraB { get; private set; }

    /// <summary>alpha / r, the factor of B A.</summary>
    public double LoraScale { get; private set; }

    public int LoraRank => LoraA?.OutFeatures ?? 0;

    /// <summary>Attaches an adapter of rank <paramref name="rank"/> (A from <paramref name="initGen"/>, B zero); dropout masks come from <paramref name="dropoutGen"/>.</summary>
    public void AddLora(int rank, double alpha, double dropout, Generator initGen, Generator dropoutGen)
    {
        if (LoraA is not null) throw new InvalidOperationException($"Linear({InFeatures} -> {OutFeatures}) already has a LoRA adapter");
        if (rank <= 0) throw new ArgumentOutOfRangeException(nameof(rank), rank, "LoRA rank r must be at least 1");
        if (!double.IsFinite(alpha) || alpha <= 0) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "LoRA alpha must be a finite number > 0");
        var dtype = Weight.DType == DType.F64 ? DType.F64 : DType.F32;
        var a = Init.FanInUniform([rank, InFeatures], InFeatures, initGen, Weight.Device, dtype);
        var b = Tensor.Zeros([OutFeatures, rank], dtype, Weight.Device);
        LoraA = Child("lora_A", new Linear(a));
        LoraB = Child("lora_B", new Linear(b));
        _loraDropout = Child("lora_dropout", new Dropout(dropout, dropoutGen));
        LoraScale = alpha / rank;
        if (!Training) { LoraA.Eval(); LoraB.Eval(); _loraDropout.Eval(); }
    }

    /// <summary>Turns the adapter's dropout on or off without touching the rest of the model (the frozen base stays in eval).</summary>
    public void SetLoraTraining(bool training)
    {
        if (training) _loraDropout?.Train();
        else _loraDropout?.Eval();
    }

    /// <summary>
    /// (alpha/r) B A dropout(x) for rows (N, in), in <paramref name="dtype"/> (the base product's). The rows are cast to the
    /// adapter's dtype first, except under autocast, where the adapter's matmuls cast both sides to 16 bits themselves
    /// and the 16-bit delta adds to the 16-bit base product (Autocast.cs).
    /// </summary>
    private Tensor LoraDelta(Tensor rows, DType dtype)
    {
        var adapter = LoraA!.Weight.DType;
        var x = rows.DType == adapter || Autocast.Target(rows.DType, adapter) is not null ? rows : rows.To(adapter);
        var delta = LoraB!.Forward(LoraA.Forward(_loraDropout!.Forward(x))).MulScalar(LoraScale); // (N, r) -> (N, out)
        return delta.To(dtype);
    }

    /// <summary>
    /// W += (alpha/r) B A, and the adapter is removed: the layer then computes what base + adapter computed, in one GEMM.
    /// A block-format W cannot take a small update without re-quantizing it away (the update is far below one
    /// quantization step), so it is merged into a dequantized float32 copy, which replaces it (frozen) in the state dict.
    /// </summary>
    public void MergeLora()
    {
        if (LoraA is null || LoraB is null) throw new InvalidOperationException($"Linear({InFeatures} -> {OutFeatures}) has no LoRA adapter to merge");
        using (GradMode.NoGrad())
        {
            var delta = LoraB.Weight.MatMul(LoraA.Weight).MulScalar(LoraScale);   // (out, r) x (r, in) = (out, in)
            if (Quantized)
            {
                var merged = (Weight.To(DType.F32) + delta.To(DType.F32)).Detach();
                Unregister("weight");
                Weight = Parameter("weight", merged);
                Weight.RequiresGrad = false;
            }
            else
            {
                Weight.CopyFrom_((Weight.To(delta.DType) + delta).To(Weight.DType));
            }
        }
        Unregister("lora_A");
        Unregister("lora_B");
        Unregister("lora_dropout");
        LoraA = LoraB = null;
        _loraDropout = null;
        LoraScale = 0;
    }

    /// <summary>
    /// QLoRA's base: the float weight becomes a frozen block-format buffer (NF4, Q4_0, ...) multiplied by QMatMul.
    /// The rows of W (length in) must fill whole blocks of the format.
    /// </summary>
    public void QuantizeWeight(DType format)
    {
        if (!format.IsQuantized()) throw new ArgumentException($"QuantizeWeight: {format} is not a block format", nameof(format));
        if (Quantized) throw new InvalidOperationException($"Linear({InFeatures} -> {OutFeatures}): the weight is already {Weight.DType}");
        int block = BlockFormats.Get(format).BlockSize;
        if (InFeatures % block != 0)
            throw new ArgumentException($"Linear({InFeatures} -> {OutFeatures}): in-features {InFeatures} is not a multiple of {format}'s block of {block} values");
        Tensor q;
        using (GradMode.NoGrad()) q = Weight.To(DType.F32).To(format).Detach();
        Unregister("weight");
        Weight = Buffer("weight", q);
    }
}
