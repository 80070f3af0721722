namespace ManagedTensor.Nn;

/// <summary>
/// BitNet b1.58's linear layer (Ma et al. 2024, "The Era of 1-bit LLMs", and its training-tips note):
///   x_n = x / sqrt(mean(x^2) + eps)                       a parameter-free RMS norm of the input
///   x_q = round(x_n * 127 / max|x_n|) * max|x_n| / 127    absmax 8-bit activations, per token (row)
///   w_q = clamp(round(W / s), -1, 1) * s,  s = mean|W|    absmean ternary weights, one scale per matrix
///   y   = x_q w_q^T
/// Training keeps W in float32 and passes gradients through both roundings unchanged (the straight-through
/// estimator, <see cref="StraightThrough"/>): dL/dx_n = dL/dx_q and dL/dW = dL/dw_q.
///
/// Inference packs the ternary matrix clamp(round(W / s), -1, 1) into TQ2_0 blocks (2 bits a value, llama.cpp's
/// format; the block scale is exactly 1) with s kept in float32 outside, and runs y = s * QMatMul(x_q, W_t),
/// the integer dot product of TQ2_0 with Q8_K. TQ2_0 blocks are 256 values, so the input axis is padded with
/// zeros to a multiple of 256 (zero weights and zero activations add nothing). QMatMul requantizes x_q to
/// Q8_K (an absmax scale per 256 values instead of per row): the one difference from the training forward,
/// at most half a Q8_K step per activation.
/// </summary>
public sealed class BitLinear : Module
{
    public const double NormEps = 1e-6, ScaleFloor = 1e-5;

    private Tensor? _packed;   // (out, in padded to 256) TQ2_0 ternary, after Pack()
    private double _packedScale;

    public BitLinear(int inFeatures, int outFeatures, Generator gen, Device device, double initStd = 0.02)
    {
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = Parameter("weight", Init.Normal([outFeatures, inFeatures], initStd, gen, device));
    }

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public Tensor Weight { get; }   // (out, in), float: the latent weights training updates
    public bool IsPacked => _packed is not null;

    public Tensor Forward(Tensor x) // (..., in) -> (..., out)
    {
        if (x.Rank == 0 || x.Shape[^1] != InFeatures)
            throw new ArgumentException($"BitLinear({InFeatures} -> {OutFeatures}): input {x.Describe()} must end in {InFeatures}");
        var rows = x.Reshape(-1, InFeatures).RmsNorm(null, NormEps);                          // (N, in)
        Tensor y;
        if (_packed is not null)
        {
            var xq = QuantizeActivations(rows);
            int pad = _packed.Shape[1] - InFeatures;
            if (pad > 0) xq = Tensor.Cat([xq, Tensor.Zeros([xq.Shape[0], pad], xq.DType, xq.Device)], 1);
            y = xq.QMatMul(_packed).MulScalar(_packedScale);                                  // (N, out)
        }
        else y = FakeQuantized(rows, Weight);
        return y.Reshape([.. x.Shape[..^1], OutFeatures]);
    }

    /// <summary>The training forward on normalized rows <paramref name="rows"/> (N, in) and latent weights <paramref name="w"/> (out, in): (N, out).</summary>
    public static Tensor FakeQuantized(Tensor rows, Tensor w)
    {
        var xq = StraightThrough.Apply(rows, QuantizeActivations);                            // (N, in)
        var wq = StraightThrough.Apply(w, QuantizeWeights);                                   // (out, in)
        return xq.MatMul(wq.MT);                                                              // (N, out)
    }

    /// <summary>Absmax 8-bit fake quantization per row: round(x * 127 / max|x|) / (127 / max|x|).</summary>
    public static Tensor QuantizeActivations(Tensor x)
    {
        var scale = x.Abs().Max(-1, keepDim: true).Clamp(ScaleFloor, double.MaxValue).Reciprocal().MulScalar(127); // (N, 1)
        return RoundSmall(x * scale, 128) / scale;
    }

    /// <summary>Absmean ternary fake quantization: clamp(round(W / s), -1, 1) * s with s = mean|W| (floored at 1e-5).</summary>
    public static Tensor QuantizeWeights(Tensor w)
    {
        var s = w.Abs().Mean().Clamp(ScaleFloor, double.MaxValue);   // ()
        return Ternary(w, s) * s;
    }

    /// <summary>The ternary codes clamp(round(W / s), -1, 1) of <paramref name="w"/> for the scale <paramref name="s"/>.</summary>
    private static Tensor Ternary(Tensor w, Tensor s) => RoundSmall((w / s).Clamp(-1, 1), 2);

    /// <summary>
    /// round(v) for |v| below <paramref name="bound"/>, half away from -infinity, from the ops every backend
    /// has: v + bound + 1/2 is positive, so the integer cast (which truncates) floors it.
    /// </summary>
    private static Tensor RoundSmall(Tensor v, int bound) =>
        v.AddScalar(bound + 0.5).To(DType.I32).To(v.DType).AddScalar(-bound);

    /// <summary>
    /// Switches this layer to inference on packed ternary weights (TQ2_0), from the current latent weights.
    /// The forward then no longer differentiates the weights.
    /// </summary>
    public void Pack()
    {
        using var noGrad = GradMode.NoGrad();
        var s = Weight.Abs().Mean().Clamp(ScaleFloor, double.MaxValue);
        SetTernary(Ternary(Weight, s), s.Item());
    }

    /// <summary>Back to the training forward on the latent float weights (the packed copy is dropped).</summary>
    public void Unpack() => _packed = null;

    /// <summary>
    /// Loads ternary weights <paramref name="ternary"/> (out, in) with values in {-1, 0, 1} and their scale
    /// (a BitNet checkpoint's codes), packed into TQ2_0 for inference.
    /// </summary>
    public void SetTernary(Tensor ternary, double scale)
    {
        if (!ternary.Shape.AsSpan().SequenceEqual(Weight.Shape))
            throw new UserErrorException($"BitLinear: ternary weights {ternary.Describe()} must have the layer's shape {Tensor.ShapeString(Weight.Shape)}");
        if (!(scale > 0) || double.IsInfinity(scale))
            throw new UserErrorException($"BitLinear: the ternary scale must be positive and finite, got {scale}");
        var codes = ternary.To(Device.Cpu).ToDoubleArray();
        int bad = Array.FindIndex(codes, v => v is not (-1 or 0 or 1));
        if (bad >= 0)
            throw new UserErrorException($"BitLinear: ternary weights{(ternary.Name is null ? "" : $" '{ternary.Name}'")} {ternary.Describe()} " +
                $"hold {codes[bad]} at [{bad / InFeatures}, {bad % InFeatures}]; every value must be -1, 0 or 1");
        int padded = (InFeatures + Quant.TQ2_0.BlockSize - 1) / Quant.TQ2_0.BlockSize * Quant.TQ2_0.BlockSize;
        var rows = new float[OutFeatures * padded];
        for (int o = 0; o < OutFeatures; o++)
            for (int i = 0; i < InFeatures; i++) rows[o * padded + i] = (float)codes[o * InFeatures + i];
        _packed = Tensor.FromArray(rows, [OutFeatures, padded]).To(DType.TQ2_0).To(Weight.Device);  // block scale d = max|code| = 1
        _packedScale = scale;
    }
}
