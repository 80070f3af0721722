namespace ManagedTensor.Nn;

/// <summary>
/// The diffusion step t as a vector (DDPM, ADM, DiT's TimestepEmbedder): sinusoids at geometric frequencies, then an
/// MLP. With half = freq_dim / 2 and f_i = exp(-ln(max_period) * i / half):
///   emb(t) = [cos(t f_0), ..., cos(t f_{half-1}), sin(t f_0), ..., sin(t f_{half-1})]   (DiT's order: cos first)
/// then mlp = Linear(freq_dim -> dim), SiLU, Linear(dim -> dim), N(0, 0.02) weights as DiT initializes them.
/// The sinusoids are a fixed function of t computed on the host (t is data, not a parameter): only the MLP learns.
/// </summary>
public sealed class TimestepEmbedding : Module
{
    public TimestepEmbedding(int dim, Generator gen, Device device, int freqDim = 256, double maxPeriod = 10000)
    {
        if (freqDim % 2 != 0 || freqDim < 2) throw new ArgumentException($"TimestepEmbedding: frequency size {freqDim} must be even and >= 2");
        (Dim, FreqDim, MaxPeriod, _device) = (dim, freqDim, maxPeriod, device);
        Fc1 = Child("mlp.0", new Linear(freqDim, dim, true, gen, device, initStd: 0.02));
        Fc2 = Child("mlp.2", new Linear(dim, dim, true, gen, device, initStd: 0.02));
    }

    private readonly Device _device;
    public int Dim { get; }
    public int FreqDim { get; }
    public double MaxPeriod { get; }
    public Linear Fc1 { get; }
    public Linear Fc2 { get; }

    /// <summary>The sinusoids of each t (B) as (B, <paramref name="dim"/>) float32, in double before the cast.</summary>
    public static Tensor Sinusoidal(double[] t, int dim, Device device, double maxPeriod = 10000)
    {
        int half = dim / 2;
        var v = new float[t.Length * dim];
        for (int b = 0; b < t.Length; b++)
            for (int i = 0; i < half; i++)
            {
                double arg = t[b] * Math.Exp(-Math.Log(maxPeriod) * i / half);
                v[b * dim + i] = (float)Math.Cos(arg);
                v[b * dim + half + i] = (float)Math.Sin(arg);
            }
        return Tensor.FromArray(v, [t.Length, dim], device);
    }

    public Tensor Forward(double[] t) => Fc2.Forward(Fc1.Forward(Sinusoidal(t, FreqDim, _device, MaxPeriod)).Silu()); // (B) -> (B, dim)
}
