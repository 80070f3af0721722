using ManagedTensor.Nn;

namespace ManagedTensor.Models.Diffusion;

/// <summary>
/// A network that, given noisy images x_t, their diffusion steps t and class labels (Classes = no class, for
/// classifier-free guidance), predicts the noise or the velocity (<see cref="DiffusionConfig.Prediction"/>).
/// </summary>
public abstract class Denoiser : Module
{
    protected Denoiser(DiffusionConfig config) => Config = config;

    public DiffusionConfig Config { get; }

    /// <summary>(B, C, S, S), t (B), labels (B) -> (B, C, S, S). <paramref name="dropGen"/> (training) drops labels to the null class.</summary>
    public abstract Tensor Forward(Tensor x, double[] t, int[] labels, Generator? dropGen = null);

    public static Denoiser Create(DiffusionConfig config, Generator gen, Device device)
    {
        config.Validate();
        return config.Arch == "unet" ? new UNet(config, gen, device) : new DiT(config, gen, device);
    }
}

/// <summary>
/// Multi-head self-attention over a token sequence (B, T, D), no mask: one qkv projection, PyTorch's scaled dot-product
/// attention per head, an output projection. The U-Net's spatial attention (tokens = pixels) and DiT's blocks share it.
/// </summary>
public sealed class SelfAttention : Module
{
    public SelfAttention(int dim, int heads, Generator gen, Device device, bool zeroProj = false)
        : this(new Linear(dim, 3 * dim, true, gen, device),
               zeroProj ? new Linear(Tensor.Zeros([dim, dim], DType.F32, device), Tensor.Zeros([dim], DType.F32, device)) : new Linear(dim, dim, true, gen, device),
               heads) { }

    /// <summary>Over existing layers: qkv (D -> 3D), proj (D -> D).</summary>
    public SelfAttention(Linear qkv, Linear proj, int heads)
    {
        int dim = proj.OutFeatures;
        if (dim % heads != 0) throw new ArgumentException($"SelfAttention: {heads} heads must divide width {dim}");
        if (qkv.InFeatures != dim || qkv.OutFeatures != 3 * dim || proj.InFeatures != dim)
            throw new ArgumentException($"SelfAttention: qkv ({qkv.InFeatures} -> {qkv.OutFeatures}) and proj ({proj.InFeatures} -> {proj.OutFeatures}) must be D -> 3D and D -> D");
        (Dim, Heads) = (dim, heads);
        Qkv = Child("qkv", qkv);
        Proj = Child("proj", proj);
    }

    public int Dim { get; }
    public int Heads { get; }
    public Linear Qkv { get; }
    public Linear Proj { get; }

    public Tensor Forward(Tensor x) // (B, T, D) -> (B, T, D)
    {
        int b = x.Shape[0], t = x.Shape[1];
        var qkv = Qkv.Forward(x).Reshape(b, t, 3, Heads, Dim / Heads).Permute(2, 0, 3, 1, 4); // (3, B, H, T, Dh)
        var parts = qkv.Split(1, 0);
        var o = Tensor.Attention(parts[0].Squeeze(0), parts[1].Squeeze(0), parts[2].Squeeze(0), causal: false); // (B, H, T, Dh)
        return Proj.Forward(o.Transpose(1, 2).Reshape(b, t, Dim));
    }
}
