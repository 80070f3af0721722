using ManagedTensor.Models.Generation;
using ManagedTensor.Nn;

namespace ManagedTensor.Models.BitNet;

/// <summary>A BitNet b1.58 GPT's shape: GPT's, with every projection inside the blocks a <see cref="BitLinear"/>.</summary>
public sealed record BitNetConfig(int BlockSize = 64, int VocabSize = 65, int NLayer = 4, int NHead = 4, int NEmbd = 128, double Dropout = 0.0) : IGptShape
{
    public void Validate()
    {
        if (BlockSize <= 0 || VocabSize <= 0 || NLayer <= 0 || NHead <= 0 || NEmbd <= 0)
            throw new ArgumentException($"BitNet config: every size must be positive: {this}");
        if (NEmbd % NHead != 0) throw new ArgumentException($"BitNet config: n_embd {NEmbd} is not a multiple of n_head {NHead}");
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"BitNet config: dropout {Dropout} must be in [0, 1)");
    }
}

/// <summary>
/// BitNet b1.58 (Ma et al. 2024) on nanoGPT's GPT: token and position embeddings and the tied head stay in float
/// (as BitNet keeps them), and every linear layer of the blocks is a <see cref="BitLinear"/>: ternary weights,
/// 8-bit activations, each with its own parameter-free RMS norm in front (the norm BitNet puts before every
/// quantization, so the blocks need no separate pre-norms): x + proj(attn(qkv(x))), x + fc2(GELU(fc1(x))).
/// Training keeps float latent weights (straight-through gradients). Sampling packs the ternary weights into
/// TQ2_0 blocks and decodes with the integer QMatMul and a KV cache, then restores the training forward.
/// </summary>
public sealed class BitNetGpt : GptShapedLM<BitNetConfig, BitBlock>
{
    public BitNetGpt(BitNetConfig config, Generator initGen, Device? device = null, ulong dropoutSeed = 0)
        : base(config, "BitNet", prefix: "", lnFBias: false, initGen, device, dropoutSeed, (dropoutGen, dev) => new BitBlock(config, initGen, dropoutGen, dev))
    {
    }

    public override string Architecture => "bitnet";

    private IEnumerable<BitLinear> BitLinears => H.Items.SelectMany(b => new[] { b.Qkv, b.Proj, b.Fc1, b.Fc2 });

    /// <summary>Packs every BitLinear's ternary weights into TQ2_0 (inference: the integer QMatMul), or with false returns to training.</summary>
    public void SetPacked(bool packed)
    {
        foreach (var layer in BitLinears)
            if (packed) layer.Pack();
            else layer.Unpack();
    }

    /// <summary>idx (B, T) continuing the cache's positions -> logits (B, T, V).</summary>
    public Tensor Forward(Tensor idx, KvCache? cache) => Logits(idx, cache, allPositions: true);

    /// <summary>Decoding on the packed ternary weights with GPT's KV-cached generate; the training forward is restored after.</summary>
    public override List<int>[] Generate(Tensor idx, int maxNewTokens, Sampler sampler, Action<int>? onToken = null, bool useCache = true)
    {
        bool wasTraining = Training;
        Eval();
        SetPacked(true);
        try
        {
            return base.Generate(idx, maxNewTokens, sampler, onToken, useCache);
        }
        finally
        {
            SetPacked(false);
            if (wasTraining) Train();
        }
    }
}

/// <summary>A BitNet block: causal attention and a GELU MLP, every projection a BitLinear (each normalizes its own input).</summary>
public sealed class BitBlock : Module, ICausalBlock
{
    private readonly Dropout _dropout;
    private readonly Generator _dropoutGen;

    public BitBlock(BitNetConfig c, Generator initGen, Generator dropoutGen, Device device)
    {
        NHead = c.NHead;
        DropoutP = c.Dropout;
        _dropoutGen = dropoutGen;
        double projStd = 0.02 / Math.Sqrt(2 * c.NLayer);                        // nanoGPT's residual projection init
        Qkv = Child("qkv", new BitLinear(c.NEmbd, 3 * c.NEmbd, initGen, device));
        Proj = Child("proj", new BitLinear(c.NEmbd, c.NEmbd, initGen, device, projStd));
        Fc1 = Child("fc1", new BitLinear(c.NEmbd, 4 * c.NEmbd, initGen, device));
        Fc2 = Child("fc2", new BitLinear(4 * c.NEmbd, c.NEmbd, initGen, device, projStd));
        _dropout = Child("dropout", new Dropout(c.Dropout, dropoutGen));
    }

    public int NHead { get; }
    public double DropoutP { get; }
    public BitLinear Qkv { get; }
    public BitLinear Proj { get; }
    public BitLinear Fc1 { get; }
    public BitLinear Fc2 { get; }

    public Tensor Forward(Tensor x, KvCache.Layer? cache) // (B, T, C)
    {
        int b = x.Shape[0], t = x.Shape[1], c = x.Shape[2], hs = c / NHead;
        var qkv = Qkv.Forward(x).Split(c, axis: 2);                              // 3 x (B, T, C)
        var q = qkv[0].Reshape(b, t, NHead, hs).Transpose(1, 2);                 // (B, nh, T, hs)
        var k = qkv[1].Reshape(b, t, NHead, hs).Transpose(1, 2);
        var v = qkv[2].Reshape(b, t, NHead, hs).Transpose(1, 2);
        if (cache is not null) (k, v) = cache.Append(k, v);                     // (B, nh, past + T, hs)
        var y = Tensor.Attention(q, k, v, causal: true, dropoutP: Training ? DropoutP : 0, gen: _dropoutGen);  // (B, nh, T, hs)
        x += _dropout.Forward(Proj.Forward(y.Transpose(1, 2).Contiguous().Reshape(b, t, c)));
        return x + _dropout.Forward(Fc2.Forward(Fc1.Forward(x).Gelu()));
    }
}
