namespace ManagedTensor.Nn;

/// <summary>
/// (x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance), one fused op
/// forward and one backward. nanoGPT's LayerNorm makes the bias optional (bias=False in its configs).
/// </summary>
public sealed class LayerNorm : Module
{
    public LayerNorm(int dim, bool bias, Device device, double eps = 1e-5)
    {
        Eps = eps;
        Weight = Parameter("weight", Tensor.Ones([dim], DType.F32, device));
        if (bias) Bias = Parameter("bias", Tensor.Zeros([dim], DType.F32, device));
    }

    public double Eps { get; }
    public Tensor Weight { get; } // (dim)
    public Tensor? Bias { get; }  // (dim)

    public Tensor Forward(Tensor x) => x.LayerNorm(Weight, Bias, Eps);
}
