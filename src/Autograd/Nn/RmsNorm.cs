namespace ManagedTensor.Nn;

/// <summary>x / sqrt(mean(x^2) + eps) * weight over the last axis (Llama's norm: no centering, no bias).</summary>
public sealed class RmsNorm : Module
{
    public RmsNorm(int dim, Device device, double eps = 1e-5)
    {
        Eps = eps;
        Weight = Parameter("weight", Tensor.Ones([dim], DType.F32, device));
    }

    public double Eps { get; }
    public Tensor Weight { get; } // (dim)

    public Tensor Forward(Tensor x) => x.RmsNorm(Weight, Eps);
}
