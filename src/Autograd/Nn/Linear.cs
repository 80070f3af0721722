namespace ManagedTensor.Nn;

/// <summary>
/// y = x W^T + b with W (out, in), as torch.nn.Linear. Leading axes of x are folded into the rows, so a
/// (B, T, in) input is one (B*T, in) x (in, out) GEMM, and W's gradient one GEMM too.
/// </summary>
public sealed class Linear : Module
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

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public Tensor Weight { get; }   // (out, in)
    public Tensor? Bias { get; }    // (out)

    public Tensor Forward(Tensor x) // (..., in) -> (..., out)
    {
        if (x.Rank == 0 || x.Shape[^1] != InFeatures)
            throw new ArgumentException($"Linear({InFeatures} -> {OutFeatures}): input {x.Describe()} must end in {InFeatures}");
        var rows = x.Reshape(-1, InFeatures).MatMul(Weight.MT);  // (N, out)
        if (Bias is not null) rows += Bias;
        return rows.Reshape([.. x.Shape[..^1], OutFeatures]);
    }
}
