using ManagedTensor.Models.Generation;
using ManagedTensor.Nn;

namespace ManagedTensor.Models.BitNet;

/// <summary>A BitNet b1.58 GPT's shape: GPT's, with every projection inside the blocks a <see cref="BitLinear"/>.</summary>
public sealed record BitNetConfig(int BlockSize = 64, int VocabSize = 65, int NLayer = 4, int NHead = 4, int NEmbd = 128, double Dropout = 0.0) : IModelConfig
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
public sealed class BitNetGpt : TrainableLM, ICausalLM
{
    private readonly Dropout _drop;

    public BitNetGpt(BitNetConfig config, Generator initGen, Device? device = null, ulong dropoutSeed = 0)
    {
        config.Validate();
        Config = config;
        Device = device ?? Device.Cpu;
        DropoutGenerator = new Generator(dropoutSeed);
        Wte = Child("wte", new Embedding(config.VocabSize, config.NEmbd, initGen, Device, initStd: 0.02));
        Wpe = Child("wpe", new Embedding(config.BlockSize, config.NEmbd, initGen, Device, initStd: 0.02));
        _drop = Child("drop", new Dropout(config.Dropout, DropoutGenerator));
        H = Child("h", new ModuleList<BitBlock>(Enumerable.Range(0, config.NLayer).Select(_ => new BitBlock(config, initGen, DropoutGenerator, Device))));
        LnF = Child("ln_f", new LayerNorm(config.NEmbd, bias: false, Device));
    }

    public BitNetConfig Config { get; }
    public override Device Device { get; }
    public override Generator DropoutGenerator { get; }
    public override string Architecture => "bitnet";
    public override int VocabSize => Config.VocabSize;
    public override IModelConfig ConfigRecord => Config;
    public Embedding Wte { get; }
    public Embedding Wpe { get; }
    public ModuleList<BitBlock> H { get; }
    public LayerNorm LnF { get; }

    private IEnumerable<BitLinear> BitLinears => H.Items.SelectMany(b => new[] { b.Qkv, b.Proj, b.Fc1, b.Fc2 });

    /// <summary>Packs every BitLinear's ternary weights into TQ2_0 (inference: the integer QMatMul), or with false returns to training.</summary>
    public void SetPacked(bool packed)
    {
        foreach (var layer in BitLinears)
            if (packed) layer.Pack();
            else layer.Unpack();
    }

    public override Tensor Logits(Tensor idx) => Forward(idx, null);

    /// <summary>idx (B, T) continuing the cache's positions -> logits (B, T, V).</summary>
    public Tensor Forward(Tensor idx, KvCache? cache)
    {
        if (idx.Rank != 2) throw new ArgumentException($"BitNet: input ids must be (B, T), got {idx.Describe()}");
        int t = idx.Shape[1], start = cache?.Length ?? 0;
        if (start + t > Config.BlockSize)
            throw new ArgumentException($"BitNet: cannot forward positions {start}..{start + t - 1}, block size is only {Config.BlockSize}");
        var x = _drop.Forward(Wte.Forward(idx) + Wpe.Forward(Tensor.Arange(start, start + t, 1, DType.I64, Device)));  // (B, T, C)
        for (int l = 0; l < H.Count; l++) x = H[l].Forward(x, cache?.Layers[l]);
        cache?.Advance(t);
        var h = LnF.Forward(x);
        return h.Reshape(-1, Config.NEmbd).MatMul(Wte.Weight.MT).Reshape([.. h.Shape[..^1], Config.VocabSize]);
    }

    // ICausalLM: what GPT's windowed, KV-cached generate (WindowedGeneration) needs to decode this model.
    public int ContextLength => Config.BlockSize;
    public long WeightCount => this.WeightSize().Count;
    public long WeightBytes => this.WeightSize().Bytes;

    public KvCache NewCache(int batch = 1, int capacity = 0) =>
        new(Config.NLayer, batch, Config.NHead, capacity == 0 ? Config.BlockSize : capacity, Config.NEmbd / Config.NHead, DType.F32, Device);

    Tensor ICausalLM.Forward(Tensor ids, KvCache? cache, bool allPositions)
    {
        var logits = Forward(ids, cache);                                                // (B, T, V)
        return allPositions ? logits : logits.Narrow(1, ids.Shape[1] - 1, 1);           // (B, 1, V)
    }

    /// <summary>Decoding on the packed ternary weights with GPT's KV-cached generate; the training forward is restored after.</summary>
    public override List<int>[] Generate(Tensor idx, int maxNewTokens, Sampler sampler, Action<int>? onToken = null, bool useCache = true)
    {
        bool wasTraining = Training;
        Eval();
        SetPacked(true);
        try
        {
            return WindowedGeneration.Generate(this, idx, maxNewTokens, sampler, onToken, useCache);
        }
        finally
        {
            SetPacked(false);
            if (wasTraining) Train();
        }
    }
}

/// <summary>A BitNet block: causal attention and a GELU MLP, every projection a BitLinear (each normalizes its own input).</summary>
public sealed class BitBlock : Module
{
    private readonly Dropout _dropout;
    private readonly Generator _dropoutGen;

    public BitBlock(BitNetConfig c, Generator initGen, Generator dropoutGen, Device device)
    {
        NHead = c.NHead;
        DropoutP = c.Dropout;
        _dropoutGen = dropoutGen;
        double projStd = 0.02 / Math.Sqrt(2 * c.NLayer);
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
