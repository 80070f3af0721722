namespace ManagedTensor.Nn;

/// <summary>
/// Adaptive layer norm with zero init (DiT, Peebles and Xie 2023): a conditioning vector c (the timestep embedding
/// plus the class embedding) regresses <see cref="Chunks"/> vectors of the model width, SiLU then Linear, whose
/// weight and bias start at zero. A block uses them as shift, scale and gate:
///   modulate(x, shift, scale) = x * (1 + scale) + shift      (per sample, broadcast over tokens)
///   x = x + gate * f(modulate(norm(x), shift, scale))
/// At init every gate is 0, so each residual block starts as the identity, which is what made DiT train stably.
/// </summary>
public sealed class AdaLnZero : Module
{
    public AdaLnZero(int condDim, int dim, int chunks, Device device)
        : this(new Linear(Tensor.Zeros([chunks * dim, condDim], DType.F32, device), Tensor.Zeros([chunks * dim], DType.F32, device)), chunks) { }

    /// <summary>Over an existing projection (cond -> chunks * dim), e.g. a checkpoint's.</summary>
    public AdaLnZero(Linear proj, int chunks)
    {
        if (chunks < 1 || proj.OutFeatures % chunks != 0) throw new ArgumentException($"AdaLnZero: {chunks} chunks must divide the projection's {proj.OutFeatures} outputs");
        (Dim, Chunks) = (proj.OutFeatures / chunks, chunks);
        Proj = Child("1", proj); // named as DiT's adaLN_modulation = Sequential(SiLU, Linear): index 1
    }

    public int Dim { get; }
    public int Chunks { get; }
    public Linear Proj { get; }

    /// <summary>c (B, cond) -> Chunks tensors of (B, 1, dim), ready to broadcast over a (B, T, dim) sequence.</summary>
    public Tensor[] Forward(Tensor c) => Proj.Forward(c.Silu()).Unsqueeze(1).Chunk(Chunks, -1);

    /// <summary>x (B, T, D) * (1 + scale) + shift, scale and shift (B, 1, D).</summary>
    public static Tensor Modulate(Tensor x, Tensor shift, Tensor scale) => x * (scale + 1) + shift;
}
