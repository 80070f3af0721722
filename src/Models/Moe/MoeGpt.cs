using ManagedTensor.Models.Generation;
using ManagedTensor.Nn;

namespace ManagedTensor.Models.Moe;

/// <summary>
/// A mixture-of-experts GPT's shape: GPT's attention, and in place of each 4C MLP, <see cref="Experts"/> GELU
/// experts of width <see cref="ExpertHidden"/> of which each token uses <see cref="TopK"/>. The defaults (4 experts
/// of width C, top-2) hold as many feed-forward weights as GPT's MLP and spend half its FLOPs per token.
/// <see cref="AuxWeight"/> scales the load-balancing loss added to the training loss (Switch: 0.01).
/// </summary>
public sealed record MoeConfig(int BlockSize = 64, int VocabSize = 65, int NLayer = 4, int NHead = 4, int NEmbd = 128, double Dropout = 0.0,
    int Experts = 4, int TopK = 2, int ExpertHidden = 128, double AuxWeight = 0.01) : IModelConfig
{
    public void Validate()
    {
        if (BlockSize <= 0 || VocabSize <= 0 || NLayer <= 0 || NHead <= 0 || NEmbd <= 0 || Experts <= 0 || ExpertHidden <= 0)
            throw new ArgumentException($"MoE config: every size must be positive: {this}");
        if (NEmbd % NHead != 0) throw new ArgumentException($"MoE config: n_embd {NEmbd} is not a multiple of n_head {NHead}");
        if (TopK < 1 || TopK > Experts) throw new ArgumentException($"MoE config: top_k {TopK} must be between 1 and the number of experts {Experts}");
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"MoE config: dropout {Dropout} must be in [0, 1)");
        if (!(AuxWeight >= 0) || double.IsInfinity(AuxWeight)) throw new ArgumentException($"MoE config: aux_weight {AuxWeight} must be finite and non-negative");
    }
}

/// <summary>
/// A sparse mixture-of-experts language model (Switch Transformer / Mixtral's layout on nanoGPT's GPT): token and
/// position embeddings, n_layer pre-norm blocks x + attn(LN(x)), x + MoE(LN(x)), a final LayerNorm and the head
/// tied to the embedding. The training loss is the cross-entropy plus AuxWeight times the mean of the layers'
/// load-balancing losses (<see cref="TopKRouter"/>); evaluation reports the cross-entropy alone. Sampling runs a
/// KV cache as GPT's does.
/// </summary>
public sealed class MoeGpt : TrainableLM, ICausalLM
{
    private readonly Dropout _drop;

    public MoeGpt(MoeConfig config, Generator initGen, Device? device = null, ulong dropoutSeed = 0)
    {
        config.Validate();
        Config = config;
        Device = device ?? Device.Cpu;
        DropoutGenerator = new Generator(dropoutSeed);
        double projStd = 0.02 / Math.Sqrt(2 * config.NLayer);
        Wte = Child("wte", new Embedding(config.VocabSize, config.NEmbd, initGen, Device, initStd: 0.02));
        Wpe = Child("wpe", new Embedding(config.BlockSize, config.NEmbd, initGen, Device, initStd: 0.02));
        _drop = Child("drop", new Dropout(config.Dropout, DropoutGenerator));
        H = Child("h", new ModuleList<MoeBlock>(Enumerable.Range(0, config.NLayer).Select(_ => new MoeBlock(config, projStd, initGen, DropoutGenerator, Device))));
        LnF = Child("ln_f", new LayerNorm(config.NEmbd, bias: false, Device));
    }

    public MoeConfig Config { get; }
    public override Device Device { get; }
    public override Generator DropoutGenerator { get; }
    public override string Architecture => "moe";
    public override int VocabSize => Config.VocabSize;
    public override IModelConfig ConfigRecord => Config;
    public Embedding Wte { get; }
    public Embedding Wpe { get; }
    public ModuleList<MoeBlock> H { get; }
    public LayerNorm LnF { get; }

    /// <summary>The mean load-balancing loss of the layers in the last forward (1 per layer's k at perfect balance).</summary>
    public double LastAuxLoss { get; private set; }

    public override Tensor Logits(Tensor idx) => Forward(idx, null);

    /// <summary>Cross-entropy, plus AuxWeight times the mean aux loss while training.</summary>
    public override Tensor Loss(Tensor idx, Tensor targets)
    {
        var ce = base.Loss(idx, targets);
        var aux = H.Items.Select(b => b.Moe.LastAuxLoss!).Aggregate((a, b) => a + b).MulScalar(1.0 / H.Count);
        LastAuxLoss = aux.Item();
        return Training && Config.AuxWeight > 0 ? ce + aux.MulScalar(Config.AuxWeight) : ce;
    }

    /// <summary>idx (B, T) continuing the cache's positions -> logits (B, T, V).</summary>
    public Tensor Forward(Tensor idx, KvCache? cache)
    {
        if (idx.Rank != 2) throw new ArgumentException($"MoE: input ids must be (B, T), got {idx.Describe()}");
        int t = idx.Shape[1], start = cache?.Length ?? 0;
        if (start + t > Config.BlockSize)
            throw new ArgumentException($"MoE: cannot forward positions {start}..{start + t - 1}, block size is only {Config.BlockSize}");
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

    /// <summary>As GPT's generate: the prompt once, then each new token against the KV cache; a full block slides the window.</summary>
    public override List<int>[] Generate(Tensor idx, int maxNewTokens, Sampler sampler, Action<int>? onToken = null, bool useCache = true) =>
        WindowedGeneration.Generate(this, idx, maxNewTokens, sampler, onToken, useCache);
}

/// <summary>A pre-norm block with a mixture of experts for its feed-forward: x + attn(LN(x)), then x + MoE(LN(x)).</summary>
public sealed class MoeBlock : Module
{
    private readonly Dropout _dropout;

    public MoeBlock(MoeConfig c, double projStd, Generator initGen, Generator dropoutGen, Device device)
    {
        Ln1 = Child("ln_1", new LayerNorm(c.NEmbd, bias: false, device));
        Attn = Child("attn", new CausalSelfAttention(c.NEmbd, c.NHead, false, c.Dropout, projStd, initGen, dropoutGen, device));
        Ln2 = Child("ln_2", new LayerNorm(c.NEmbd, bias: false, device));
        Moe = Child("moe", new MixtureOfExperts(c.NEmbd, c.ExpertHidden, c.Experts, c.TopK, Gating.Softmax, initGen, device, projStd));
        _dropout = Child("dropout", new Dropout(c.Dropout, dropoutGen));
    }

    public LayerNorm Ln1 { get; }
    public CausalSelfAttention Attn { get; }
    public LayerNorm Ln2 { get; }
    public MixtureOfExperts Moe { get; }

    public Tensor Forward(Tensor x, KvCache.Layer? cache) // (B, T, C)
    {
        x += Attn.Forward(Ln1.Forward(x), cache);
        return x + _dropout.Forward(Moe.Forward(Ln2.Forward(x)));
    }
}
