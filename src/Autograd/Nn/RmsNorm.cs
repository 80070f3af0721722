namespace ManagedTensor.Nn;

/// <summary>x / sqrt(mean(x^2) + eps) * weight over the last axis (Llama's norm: no centering, no bias).</summary>
public sealed class RmsNorm : Module
{
    public RmsNorm(int dim, Device device, double eps = 1e-5)
        : this(Tensor.Ones([dim], DType.F32, device), eps) { }

    /// <summary>A norm over an existing weight (dim), as a checkpoint stores it.</summary>
    public RmsNorm(Tensor weight, double eps = 1e-5)
    {
        if (weight.Rank != 1) throw new ArgumentException($"RmsNorm: weight {weight.Describe()} must be 1-D (dim)");
        if (!(eps > 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "RmsNorm: eps must be positive");
        Eps = eps;
        Weight = Parameter("weight", weight);
    }

    public double Eps { get; }
    public Tensor Weight { get; } // (dim)

    public Tensor Forward(Tensor x) => x.RmsNorm(Weight.DType == x.DType ? Weight : Weight.To(x.DType), Eps);
}
