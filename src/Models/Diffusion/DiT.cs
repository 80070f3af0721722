using ManagedTensor.Nn;

namespace ManagedTensor.Models.Diffusion;

/// <summary>
/// DiT (Peebles and Xie 2023, facebookresearch/DiT models.py), scaled down: the image cut into p x p patches, each a
/// token (a Linear, the same as their stride-p conv), plus fixed 2-D sine-cosine position embeddings; Depth blocks of
/// adaLN-Zero attention and MLP conditioned on c = t embedding + class embedding; a final adaLN layer and a
/// zero-initialized Linear back to p*p*C values per token, reassembled into the image.
/// Shapes for the default (32x32, p 4, width 128): (B,1,32,32) -> (B, 64, 16) -> (B, 64, 128) -> ... -> (B,1,32,32).
/// </summary>
public sealed class DiT : Denoiser
{
    private readonly List<Block> _blocks = [];
    private readonly Tensor _pos;   // (1, T, D), fixed

    public DiT(DiffusionConfig c, Generator gen, Device device) : base(c)
    {
        int d = c.DitHidden, p = c.PatchSize, grid = c.ImageSize / p;
        XEmbed = Child("x_embedder", new Linear(p * p * c.Channels, d, true, gen, device));
        TimeEmbed = Child("t_embedder", new TimestepEmbedding(d, gen, device));
        ClassEmbed = Child("y_embedder", new ClassEmbedding(c.Classes, d, c.ClassDropProb, gen, device));
        _pos = SinCos2d(d, grid, device);
        for (int i = 0; i < c.DitDepth; i++) _blocks.Add(Child($"blocks.{i}", new Block(d, c.DitHeads, gen, device)));
        FinalAdaLn = Child("final_layer.adaLN_modulation", new AdaLnZero(d, d, 2, device));
        FinalLinear = Child("final_layer.linear", new Linear(Tensor.Zeros([p * p * c.Channels, d], DType.F32, device), Tensor.Zeros([p * p * c.Channels], DType.F32, device)));
    }

    public Linear XEmbed { get; }
    public TimestepEmbedding TimeEmbed { get; }
    public ClassEmbedding ClassEmbed { get; }
    public AdaLnZero FinalAdaLn { get; }
    public Linear FinalLinear { get; }

    public override Tensor Forward(Tensor x, double[] t, int[] labels, Generator? dropGen = null)
    {
        var cfg = Config;
        var h = XEmbed.Forward(Patchify.ToPatches(x, cfg.PatchSize)) + _pos;     // (B, T, D)
        var cond = TimeEmbed.Forward(t) + ClassEmbed.Forward(labels, dropGen);   // (B, D)
        foreach (var b in _blocks) h = b.Forward(h, cond);
        var m = FinalAdaLn.Forward(cond);                                         // shift, scale: (B, 1, D)
        h = FinalLinear.Forward(AdaLnZero.Modulate(h.LayerNorm(null, null, 1e-6), m[0], m[1]));   // (B, T, p*p*C)
        return Patchify.FromPatches(h, cfg.PatchSize, cfg.Channels, cfg.ImageSize, cfg.ImageSize);
    }

    /// <summary>
    /// MAE's fixed 2-D sine-cosine position embedding, (1, grid*grid, D): half the width encodes the column, half the
    /// row, each as [sin(pos w_i), cos(pos w_i)] with w_i = 10000^(-i / (D/4)), i &lt; D/4.
    /// </summary>
    public static Tensor SinCos2d(int dim, int grid, Device device)
    {
        int quarter = dim / 4;
        var v = new float[grid * grid * dim];
        for (int r = 0; r < grid; r++)
            for (int col = 0; col < grid; col++)
            {
                int o = (r * grid + col) * dim;
                for (int i = 0; i < quarter; i++)
                {
                    double w = Math.Pow(10000, -(double)i / quarter);
                    v[o + i] = (float)Math.Sin(col * w);
                    v[o + quarter + i] = (float)Math.Cos(col * w);
                    v[o + 2 * quarter + i] = (float)Math.Sin(r * w);
                    v[o + 3 * quarter + i] = (float)Math.Cos(r * w);
                }
            }
        return Tensor.FromArray(v, [1, grid * grid, dim], device);
    }

    /// <summary>
    /// DiT's block: (shift, scale, gate) for attention and for the MLP from adaLN-Zero of c;
    ///   x = x + gate_msa * attn(modulate(ln(x), shift_msa, scale_msa))
    ///   x = x + gate_mlp * mlp(modulate(ln(x), shift_mlp, scale_mlp))
    /// with layer norms without affine (eps 1e-6) and a GELU (tanh) MLP of 4x the width.
    /// </summary>
    public sealed class Block : Module
    {
        public Block(int dim, int heads, Generator gen, Device device)
            : this(new SelfAttention(dim, heads, gen, device), new Linear(dim, 4 * dim, true, gen, device),
                   new Linear(4 * dim, dim, true, gen, device), new AdaLnZero(dim, dim, 6, device)) { }

        /// <summary>Over existing layers (tests load PyTorch's float64 weights this way).</summary>
        public Block(SelfAttention attn, Linear fc1, Linear fc2, AdaLnZero adaLn)
        {
            if (adaLn.Chunks != 6) throw new ArgumentException($"DiT block: adaLN-Zero must give 6 vectors (shift, scale, gate twice), got {adaLn.Chunks}");
            Attn = Child("attn", attn);
            Fc1 = Child("mlp.fc1", fc1);
            Fc2 = Child("mlp.fc2", fc2);
            AdaLn = Child("adaLN_modulation", adaLn);
        }

        public SelfAttention Attn { get; }
        public Linear Fc1 { get; }
        public Linear Fc2 { get; }
        public AdaLnZero AdaLn { get; }

        public Tensor Forward(Tensor x, Tensor c) // (B, T, D), (B, D) -> (B, T, D)
        {
            var m = AdaLn.Forward(c); // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp: (B, 1, D) each
            x += m[2] * Attn.Forward(AdaLnZero.Modulate(x.LayerNorm(null, null, 1e-6), m[0], m[1]));
            x += m[5] * Fc2.Forward(Fc1.Forward(AdaLnZero.Modulate(x.LayerNorm(null, null, 1e-6), m[3], m[4])).GeluTanh());
            return x;
        }
    }
}
