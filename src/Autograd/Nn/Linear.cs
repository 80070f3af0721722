namespace ManagedTensor.Nn;

/// <summary>
/// y = x W^T + b with W (out, in), as torch.nn.Linear. Leading axes of x are folded into the rows, so a
/// (B, T, in) input is one (B*T, in) x (in, out) GEMM, and W's gradient one GEMM too.
/// W is either a float tensor, a trainable parameter multiplied by MatMul, or a block-format tensor
/// (Q8_0, Q4_0, Q4_K, ...), a frozen buffer multiplied by <see cref="Tensor.QMatMul"/>: it stays in its
/// blocks on every device (a quantized Linear, as in QLoRA: gradients flow to x, never to W).
/// A float W of another dtype than x (F16 or BF16 weights with float32 activations) is multiplied in W's
/// dtype on a CUDA device (the tensor-core GEMM, float32 accumulation); elsewhere, for inference, by QMatMul
/// (W read as stored, widened a tile at a time on the CPU), and when W is being trained, in x's dtype with W
/// widened for the product (so its gradient flows). The result comes back in x's dtype.
/// A LoRA adapter may be attached (Linear.Lora.cs): y += (alpha/r) B A x, with lora_A and lora_B as children.
/// </summary>
public sealed partial class Linear : Module
{
    /// <param name="initStd">Normal(0, initStd) weights (nanoGPT: 0.02); null for PyTorch's default U(+-1/sqrt(in)).</param>
    public Linear(int inFeatures, int outFeatures, bool bias, Generator gen, Device device, double? initStd = null)
    {
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = Parameter("weight", initStd is double std
            ? Init.Normal([outFeatures, inFeatures], std, gen, device)
            : Init.FanInUniform([outFeatures, inFeatures], inFeatures, gen, device));
        if (bias)
            Bias = Parameter("bias", initStd is null
                ? Init.FanInUniform([outFeatures], inFeatures, gen, device)
                : Tensor.Zeros([outFeatures], DType.F32, device));
    }

    /// <summary>A layer over existing tensors (a loaded checkpoint): <paramref name="weight"/> (out, in), <paramref name="bias"/> (out).</summary>
    public Linear(Tensor weight, Tensor? bias = null)
    {
        if (weight.Rank != 2) throw new ArgumentException($"Linear: weight {weight.Describe()} must be 2-D (out, in)");
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != weight.Shape[0]))
            throw new ArgumentException($"Linear: bias {bias.Describe()} must be ({weight.Shape[0]}) for weight {weight.Describe()}");
        OutFeatures = weight.Shape[0];
        InFeatures = weight.Shape[1];
        Weight = weight.DType.IsQuantized() ? Buffer("weight", weight) : Parameter("weight", weight);
        if (bias is not null) Bias = Parameter("bias", bias);
    }

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public Tensor Weight { get; private set; }   // (out, in), float or a block format (replaced by QuantizeWeight and LoRA's merge)
    public Tensor? Bias { get; }    // (out)

    /// <summary>Whether the weight is in a block format (frozen, multiplied by QMatMul).</summary>
    public bool Quantized => Weight.DType.IsQuantized();

    public Tensor Forward(Tensor x) // (..., in) -> (..., out)
    {
        if (x.Rank == 0 || x.Shape[^1] != InFeatures)
            throw new ArgumentException($"Linear({InFeatures} -> {OutFeatures}): input {x.Describe()} must end in {InFeatures}");
        var rows = x.Reshape(-1, InFeatures);                    // (N, in)
        var y = Quantized ? rows.QMatMul(Weight)                 // (N, out)
            : Weight.DType == rows.DType || Autocast.Target(rows.DType, Weight.DType) is not null ? rows.MatMul(Weight.MT) // autocast casts both (Autocast.cs)
            : MixedPrecision(rows);
        if (Bias is not null) y += Bias.DType == y.DType ? Bias : Bias.To(y.DType);
        if (LoraA is not null) y += LoraDelta(rows, y.DType);                   // + (alpha/r) B A dropout(x): Linear.Lora.cs
        return y.Reshape([.. x.Shape[..^1], OutFeatures]);
    }

    /// <summary>
    /// x W^T for a float W of another dtype than x: in W's dtype on CUDA (the tensor-core GEMM); elsewhere (the CPU, and
    /// ILGPU's CPU accelerator, whose thread groups are too small for the GEMM kernels) by QMatMul for a 16-bit W that
    /// is not being trained, else in x's dtype with W widened.
    /// </summary>
    private Tensor MixedPrecision(Tensor rows)
    {
        if (Weight.Device.Kind == DeviceKind.Cuda) return rows.To(Weight.DType).MatMul(Weight.MT).To(rows.DType);
        bool trained = GradMode.IsEnabled && Weight.RequiresGrad;
        if (!trained && rows.DType == DType.F32 && Weight.DType is DType.F16 or DType.BF16) return rows.QMatMul(Weight);
        return rows.MatMul(Weight.To(rows.DType).MT);
    }
}
