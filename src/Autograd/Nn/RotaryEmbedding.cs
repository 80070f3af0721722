namespace ManagedTensor.Nn;

/// <summary>Which dimensions of a head RoPE rotates together.</summary>
public enum RopeLayout
{
    /// <summary>Pairs (2i, 2i+1): Meta's original Llama, llama2.c, and GGUF files (llama.cpp's "normal" rope).</summary>
    Interleaved,
    /// <summary>Pairs (i, i + head_size/2): Hugging Face checkpoints (rotate_half).</summary>
    HalfSplit,
}

/// <summary>Llama 3.1's frequency-dependent RoPE scaling (long wavelengths are slowed down by Factor).</summary>
public sealed record Llama3RopeScaling(float Factor, float LowFreqFactor, float HighFreqFactor, int OriginalContextLength);

/// <summary>
/// Rotary position embeddings (Su et al. 2021): each pair (a, b) of a head's dimensions is rotated by the
/// angle p * f_i of its position p, (a, b) -> (a cos - b sin, a sin + b cos), with f_i = theta^(-2i/head_size),
/// i &lt; head_size/2. The dot product of a rotated query and key then depends only on their distance.
/// The cos and sin tables (positions, head_size/2) are made on the host in float64, rounded once to the
/// activations' dtype, and kept per device and dtype; they grow (doubling) as later positions are asked for.
/// Written with tensor ops (narrow, multiply, stack), so it runs on every backend and autograd differentiates it.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Dictionary<(Device, DType), (Tensor Cos, Tensor Sin)> _tables = [];

    public RotaryEmbedding(int headSize, double theta = 10000, RopeLayout layout = RopeLayout.Interleaved, Llama3RopeScaling? scaling = null)
    {
        if (headSize <= 0 || headSize % 2 != 0) throw new ArgumentException($"RoPE: head size {headSize} must be positive and even");
        if (!(theta > 1)) throw new ArgumentOutOfRangeException(nameof(theta), theta, "RoPE: theta must be above 1");
        HeadSize = headSize;
        Theta = theta;
        Layout = layout;
        Scaling = scaling;
        Frequencies = FrequenciesOf(headSize, theta, scaling);
    }

    public int HeadSize { get; }
    public double Theta { get; }
    public RopeLayout Layout { get; }
    public Llama3RopeScaling? Scaling { get; }

    /// <summary>f_i for each pair i &lt; head_size/2.</summary>
    public double[] Frequencies { get; }

    /// <summary>theta^(-2i/head_size), with Llama 3's scaling when given.</summary>
    public static double[] FrequenciesOf(int headSize, double theta, Llama3RopeScaling? scaling)
    {
        var f = new double[headSize / 2];
        for (int i = 0; i < f.Length; i++)
        {
            double freq = 1.0 / Math.Pow(theta, 2.0 * i / headSize);
            if (scaling is { } s)
            {
                // Wavelengths shorter than old_ctx/high_freq_factor keep their frequency, longer than
                // old_ctx/low_freq_factor are divided by Factor, and those in between blend linearly in 1/wavelength.
                double wavelen = 2 * Math.PI / freq;
                double lowWavelen = s.OriginalContextLength / s.LowFreqFactor, highWavelen = s.OriginalContextLength / s.HighFreqFactor;
                if (wavelen > lowWavelen) freq /= s.Factor;
                else if (wavelen >= highWavelen)
                {
                    double smooth = (s.OriginalContextLength / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    freq = (1 - smooth) * freq / s.Factor + smooth * freq;
                }
            }
            f[i] = freq;
        }
        return f;
    }

    /// <summary>
    /// Rotates x (B, n, T, head_size), whose T positions are start, start + 1, ...: (B, n, T, head_size).
    /// Interleaved pairs are (2i, 2i + 1), half-split pairs (i, i + head_size/2).
    /// </summary>
    public Tensor Apply(Tensor x, int start)
    {
        if (x.Rank != 4 || x.Shape[3] != HeadSize)
            throw new ArgumentException($"RoPE: input {x.Describe()} must be (B, heads, T, {HeadSize})");
        if (start < 0) throw new ArgumentOutOfRangeException(nameof(start), start, "RoPE: positions start at 0");
        int b = x.Shape[0], n = x.Shape[1], t = x.Shape[2], half = HeadSize / 2;
        var (cosAll, sinAll) = Tables(x.Device, x.DType, start + t);
        var cos = cosAll.Narrow(0, start, t);                                     // (T, hs/2), broadcast over B and heads
        var sin = sinAll.Narrow(0, start, t);
        if (Layout == RopeLayout.Interleaved)
        {
            var pairs = x.Reshape(b, n, t, half, 2);
            var a = pairs.Narrow(4, 0, 1).Squeeze(4);                              // (B, n, T, hs/2)
            var c = pairs.Narrow(4, 1, 1).Squeeze(4);
            return Tensor.Stack([a * cos - c * sin, a * sin + c * cos], axis: 4).Reshape(b, n, t, HeadSize);
        }
        var lo = x.Narrow(3, 0, half);
        var hi = x.Narrow(3, half, half);
        return Tensor.Cat([lo * cos - hi * sin, lo * sin + hi * cos], axis: 3);
    }

    /// <summary>cos and sin of p f_i for positions p &lt; at least <paramref name="positions"/>, (P, head_size/2), on <paramref name="device"/>.</summary>
    public (Tensor Cos, Tensor Sin) Tables(Device device, DType dtype, int positions)
    {
        if (_tables.TryGetValue((device, dtype), out var have) && have.Cos.Shape[0] >= positions) return have;
        int p = Math.Max(positions, Math.Max(256, 2 * (have.Cos?.Shape[0] ?? 0)));
        int half = HeadSize / 2;
        var cos = new double[(long)p * half];
        var sin = new double[(long)p * half];
        for (int pos = 0; pos < p; pos++)
            for (int i = 0; i < half; i++)
            {
                double angle = pos * Frequencies[i];
                cos[pos * half + i] = Math.Cos(angle);
                sin[pos * half + i] = Math.Sin(angle);
            }
        using var noGrad = GradMode.NoGrad();
        using var unscoped = DeviceMemory.Unscoped(); // kept across calls: not freed with a caller's memory scope
        // The smaller tables are left to the collector: a recorded graph may still hold them.
        var made = (Tensor.FromArray(cos, [p, half]).To(dtype).To(device), Tensor.FromArray(sin, [p, half]).To(dtype).To(device));
        _tables[(device, dtype)] = made;
        return made;
    }

    /// <summary>Frees the tables kept on devices.</summary>
    public void Dispose()
    {
        foreach (var (c, s) in _tables.Values) { c.Dispose(); s.Dispose(); }
        _tables.Clear();
    }
}
