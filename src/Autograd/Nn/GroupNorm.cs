namespace ManagedTensor.Nn;

/// <summary>
/// torch.nn.GroupNorm: (N, C, ...) normalized over each sample's <see cref="Groups"/> groups of C/G channels, then a
/// per-channel affine (weight 1, bias 0 at init). One fused op with its backward (<see cref="Tensor.GroupNorm"/>).
/// Diffusion U-Nets use 32 groups (DDPM) or fewer for narrow layers; G = C is instance norm, G = 1 layer norm over (C, ...).
/// </summary>
public sealed class GroupNorm : Module
{
    public GroupNorm(int groups, int channels, Device device, double eps = 1e-5)
    {
        if (groups < 1 || channels % groups != 0) throw new ArgumentException($"GroupNorm: {groups} groups must divide {channels} channels");
        (Groups, Channels, Eps) = (groups, channels, eps);
        Weight = Parameter("weight", Tensor.Ones([channels], DType.F32, device));
        Bias = Parameter("bias", Tensor.Zeros([channels], DType.F32, device));
    }

    public int Groups { get; }
    public int Channels { get; }
    public double Eps { get; }
    public Tensor Weight { get; } // (C)
    public Tensor Bias { get; }   // (C)

    public Tensor Forward(Tensor x) => x.GroupNorm(Groups, Weight, Bias, Eps); // (N, C, ...) -> (N, C, ...)

    /// <summary>silu(Forward(x)) as one op (Tensor.GroupNormSilu: on the CPU the normalized tensor is never stored).</summary>
    public Tensor ForwardSilu(Tensor x) => x.GroupNormSilu(Groups, Weight, Bias, Eps); // (N, C, ...) -> (N, C, ...)
}
