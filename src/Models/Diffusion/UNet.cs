using ManagedTensor.Nn;

namespace ManagedTensor.Models.Diffusion;

/// <summary>
/// DDPM's U-Net (Ho et al. 2020), small: a conv in; per resolution ResBlocks then a stride-2 conv down; a middle of
/// ResBlock, attention, ResBlock; per resolution back up ResBlocks fed the matching skip (concatenated channels), then
/// nearest upsampling and a conv; GroupNorm, SiLU and a zero-initialized conv out. Every ResBlock adds the step and
/// class embedding (sinusoidal t -> MLP, plus a class row; the null row for classifier-free guidance).
/// Attention runs at the lowest resolution (8x8 for 32x32 images with mults 1,2,2).
/// Shapes for the default (32 channels, mults 1,2,2, 1 ResBlock): (B,1,32,32) -> 32@32 -> 64@16 -> 64@8 -> back up.
/// </summary>
public sealed class UNet : Denoiser
{
    private const int NormGroups = 8;
    private readonly List<Module> _down = [];   // ResBlock or Downsample, in order
    private readonly List<Module> _up = [];     // ResBlock or Upsample, in order

    public UNet(DiffusionConfig c, Generator gen, Device device) : base(c)
    {
        int ch = c.UnetChannels, emb = 4 * ch;
        var mults = c.Mults;
        TimeEmbed = Child("time_embed", new TimestepEmbedding(emb, gen, device, freqDim: ch));
        ClassEmbed = Child("class_embed", new ClassEmbedding(c.Classes, emb, c.ClassDropProb, gen, device));
        ConvIn = Child("conv_in", new Conv2d(c.Channels, ch, 3, gen, device));
        var skips = new List<int> { ch };
        int cur = ch;
        for (int level = 0; level < mults.Length; level++)
        {
            for (int i = 0; i < c.ResBlocks; i++)
            {
                _down.Add(Child($"down.{_down.Count}", new ResBlock(cur, ch * mults[level], emb, gen, device)));
                cur = ch * mults[level];
                skips.Add(cur);
            }
            if (level < mults.Length - 1)
            {
                _down.Add(Child($"down.{_down.Count}", new Conv2d(cur, cur, 3, gen, device, stride: 2)));
                skips.Add(cur);
            }
        }
        Mid1 = Child("mid.0", new ResBlock(cur, cur, emb, gen, device));
        MidAttn = Child("mid.1", new AttentionBlock(cur, c.Heads, gen, device));
        Mid2 = Child("mid.2", new ResBlock(cur, cur, emb, gen, device));
        for (int level = mults.Length - 1; level >= 0; level--)
        {
            for (int i = 0; i <= c.ResBlocks; i++)
            {
                int skip = skips[^1];
                skips.RemoveAt(skips.Count - 1);
                _up.Add(Child($"up.{_up.Count}", new ResBlock(cur + skip, ch * mults[level], emb, gen, device)));
                cur = ch * mults[level];
            }
            if (level > 0) _up.Add(Child($"up.{_up.Count}", new Conv2d(cur, cur, 3, gen, device)));   // after a 2x nearest upsample
        }
        NormOut = Child("norm_out", new GroupNorm(NormGroups, cur, device));
        ConvOut = Child("conv_out", new Conv2d(cur, c.Channels, 3, gen, device));
        using (GradMode.NoGrad()) { ConvOut.Weight.CopyFrom_(ConvOut.Weight.ZerosLike()); ConvOut.Bias!.CopyFrom_(ConvOut.Bias.ZerosLike()); }
    }

    public TimestepEmbedding TimeEmbed { get; }
    public ClassEmbedding ClassEmbed { get; }
    public Conv2d ConvIn { get; }
    public ResBlock Mid1 { get; }
    public AttentionBlock MidAttn { get; }
    public ResBlock Mid2 { get; }
    public GroupNorm NormOut { get; }
    public Conv2d ConvOut { get; }

    public override Tensor Forward(Tensor x, double[] t, int[] labels, Generator? dropGen = null)
    {
        var emb = TimeEmbed.Forward(t) + ClassEmbed.Forward(labels, dropGen);   // (B, 4ch)
        var h = ConvIn.Forward(x);
        var skips = new Stack<Tensor>();
        skips.Push(h);
        foreach (var m in _down)
        {
            h = m is ResBlock r ? r.Forward(h, emb) : ((Conv2d)m).Forward(h);
            skips.Push(h);
        }
        h = Mid2.Forward(MidAttn.Forward(Mid1.Forward(h, emb)), emb);
        foreach (var m in _up)
            h = m is ResBlock r ? r.Forward(Tensor.Cat([h, skips.Pop()], 1), emb) : ((Conv2d)m).Forward(h.UpsampleNearest2d(2));
        return ConvOut.Forward(NormOut.ForwardSilu(h));
    }

    /// <summary>
    /// h = conv(silu(gn(x))) + linear(silu(emb)) per channel; h = conv(silu(gn(h))) (zero init); out = skip(x) + h,
    /// skip a 1x1 conv when the channel count changes.
    /// </summary>
    public sealed class ResBlock : Module
    {
        public ResBlock(int cin, int cout, int emb, Generator gen, Device device)
        {
            Norm1 = Child("norm1", new GroupNorm(NormGroups, cin, device));
            Conv1 = Child("conv1", new Conv2d(cin, cout, 3, gen, device));
            EmbProj = Child("emb_proj", new Linear(emb, cout, true, gen, device));
            Norm2 = Child("norm2", new GroupNorm(NormGroups, cout, device));
            Conv2 = Child("conv2", new Conv2d(cout, cout, 3, gen, device));
            using (GradMode.NoGrad()) { Conv2.Weight.CopyFrom_(Conv2.Weight.ZerosLike()); Conv2.Bias!.CopyFrom_(Conv2.Bias.ZerosLike()); }
            if (cin != cout) Skip = Child("skip", new Conv2d(cin, cout, 1, gen, device));
        }

        public GroupNorm Norm1 { get; }
        public Conv2d Conv1 { get; }
        public Linear EmbProj { get; }
        public GroupNorm Norm2 { get; }
        public Conv2d Conv2 { get; }
        public Conv2d? Skip { get; }

        public Tensor Forward(Tensor x, Tensor emb) // (B, cin, H, W), (B, E) -> (B, cout, H, W)
        {
            var h = Conv1.Forward(Norm1.ForwardSilu(x));
            var e = EmbProj.Forward(emb.Silu());                          // (B, cout)
            h += e.Reshape(e.Shape[0], e.Shape[1], 1, 1);
            h = Conv2.Forward(Norm2.ForwardSilu(h));
            return (Skip is null ? x : Skip.Forward(x)) + h;
        }
    }

    /// <summary>x + attention over the H*W positions of gn(x), channels as the width (output projection zero-initialized).</summary>
    public sealed class AttentionBlock : Module
    {
        public AttentionBlock(int channels, int heads, Generator gen, Device device)
        {
            Norm = Child("norm", new GroupNorm(NormGroups, channels, device));
            Attn = Child("attn", new SelfAttention(channels, heads, gen, device, zeroProj: true));
        }

        public GroupNorm Norm { get; }
        public SelfAttention Attn { get; }

        public Tensor Forward(Tensor x) // (B, C, H, W)
        {
            int b = x.Shape[0], c = x.Shape[1], h = x.Shape[2], w = x.Shape[3];
            var tokens = Norm.Forward(x).Reshape(b, c, h * w).Transpose(1, 2);        // (B, HW, C)
            return x + Attn.Forward(tokens).Transpose(1, 2).Reshape(b, c, h, w);
        }
    }
}
