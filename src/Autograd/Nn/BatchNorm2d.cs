namespace ManagedTensor.Nn;

/// <summary>
/// Batch norm per channel of (N, C, H, W), as torch.nn.BatchNorm2d. Training: normalize with the batch's mean
/// and biased variance (one fused op with its backward, Tensor.BatchNorm2d) and move the running statistics
/// toward the batch's: running = (1 - momentum) * running + momentum * batch, with the unbiased variance
/// (var * M / (M - 1), M = N*H*W), as PyTorch. Eval: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias,
/// an affine map per channel that <see cref="FoldInto"/> merges into the convolution before it.
/// Ultralytics' YOLOv8 uses eps 1e-3 and momentum 0.03; PyTorch's defaults are 1e-5 and 0.1.
/// </summary>
public sealed class BatchNorm2d : Module
{
    public BatchNorm2d(int channels, Device device, double eps = 1e-5, double momentum = 0.1)
    {
        (Channels, Eps, Momentum) = (channels, eps, momentum);
        Weight = Parameter("weight", Tensor.Ones([channels], DType.F32, device));
        Bias = Parameter("bias", Tensor.Zeros([channels], DType.F32, device));
        RunningMean = Buffer("running_mean", Tensor.Zeros([channels], DType.F32, device));
        RunningVar = Buffer("running_var", Tensor.Ones([channels], DType.F32, device));
    }

    public int Channels { get; }
    public double Eps { get; }
    public double Momentum { get; }
    public Tensor Weight { get; }       // (C)
    public Tensor Bias { get; }         // (C)
    public Tensor RunningMean { get; }  // (C)
    public Tensor RunningVar { get; }   // (C)

    public Tensor Forward(Tensor x) => Forward(x, silu: false); // (N, C, H, W) -> (N, C, H, W)

    /// <summary>
    /// silu(Forward(x)), the conv block's norm and activation: in training one fused op (Tensor.BatchNormSilu2d, whose
    /// CPU kernel never stores the normalized tensor), in eval mode the affine map then SiLU.
    /// </summary>
    public Tensor ForwardSilu(Tensor x) => Forward(x, silu: true); // (N, C, H, W) -> (N, C, H, W)

    private Tensor Forward(Tensor x, bool silu)
    {
        if (x.Rank != 4 || x.Shape[1] != Channels)
            throw new ArgumentException($"BatchNorm2d({Channels}): input {x.Describe()} must be (N, {Channels}, H, W)");
        if (!Training)
        {
            var (scale, shift) = EvalAffine();
            var affine = x * scale.Reshape(1, Channels, 1, 1) + shift.Reshape(1, Channels, 1, 1);
            return silu ? affine.Silu() : affine;
        }
        int m = x.Numel / Channels;
        if (m < 2) throw new ArgumentException($"BatchNorm2d({Channels}): training needs more than one value per channel, got {x.Describe()}");
        var (y, mean, invstd) = silu ? x.BatchNormSilu2d(Weight, Bias, Eps) : x.BatchNorm2d(Weight, Bias, Eps);
        using (GradMode.NoGrad())
        {
            var unbiased = (invstd.Square().Reciprocal() - Eps) * ((double)m / (m - 1)); // var = 1/invstd^2 - eps
            RunningMean.CopyFrom_(RunningMean * (1 - Momentum) + mean.Detach() * Momentum);
            RunningVar.CopyFrom_(RunningVar * (1 - Momentum) + unbiased.Detach() * Momentum);
        }
        return y;
    }

    /// <summary>Eval mode as y = x * scale + shift per channel: scale = weight / sqrt(running_var + eps), shift = bias - running_mean * scale.</summary>
    public (Tensor Scale, Tensor Shift) EvalAffine()
    {
        var scale = Weight * RunningVar.AddScalar(Eps).Rsqrt();  // (C)
        return (scale, Bias - RunningMean * scale);
    }

    /// <summary>
    /// The convolution that computes conv then this batch norm (eval mode) in one: W' = W * scale per output
    /// channel, b' = b * scale + shift. Inference runs one conv instead of conv + four elementwise ops.
    /// </summary>
    public (Tensor Weight, Tensor Bias) FoldInto(Tensor convWeight, Tensor? convBias) // (O, I/g, k, k), (O)
    {
        if (convWeight.Rank != 4 || convWeight.Shape[0] != Channels)
            throw new ArgumentException($"BatchNorm2d({Channels}).FoldInto: the conv's weight {convWeight.Describe()} must have {Channels} output channels");
        using (GradMode.NoGrad())
        {
            var (scale, shift) = EvalAffine();
            var w = convWeight * scale.Reshape(Channels, 1, 1, 1);
            var b = convBias is null ? shift : convBias * scale + shift;
            return (w.Detach(), b.Detach());
        }
    }
}
