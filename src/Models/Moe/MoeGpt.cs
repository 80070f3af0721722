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
    int Experts = 4, int TopK = 2, int ExpertHidden = 128, double AuxWeight = 0.01) : IGptShape
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
public sealed class MoeGpt : GptShapedLM<MoeConfig, MoeBlock>
{
    public MoeGpt(MoeConfig config, Generator initGen, Device? device = null, ulong dropoutSeed = 0)
        : base(config, "MoE", prefix: "", lnFBias: false, initGen, device, dropoutSeed, (dropoutGen, dev) =>
            new MoeBlock(config, ResidualProjStd(config.NLayer), initGen, dropoutGen, dev))
    {
    }

    public override string Architecture => "moe";

    // The last Loss's parts, kept as (detached) tensors: reading a value waits for the device, so it happens only when
    // something asks (the progress line every log interval), not on every forward.
    private Tensor? _lastAux, _lastCrossEntropy;

    /// <summary>The mean load-balancing loss of the layers in the last <see cref="Loss"/> (1 per layer's k at perfect balance).</summary>
    public double LastAuxLoss => _lastAux?.Item() ?? double.NaN;

    /// <summary>The cross-entropy part of the last <see cref="Loss"/>.</summary>
    public double LastCrossEntropy => _lastCrossEntropy?.Item() ?? double.NaN;

    /// <summary>Cross-entropy, plus AuxWeight times the mean aux loss while training.</summary>
    public override Tensor Loss(Tensor idx, Tensor targets)
    {
        var ce = base.Loss(idx, targets);
        var aux = H.Items.Select(b => b.Moe.LastAuxLoss!).Aggregate((a, b) => a + b).MulScalar(1.0 / H.Count);
        (_lastAux, _lastCrossEntropy) = (aux.Detach(), ce.Detach());
        return Training && Config.AuxWeight > 0 ? ce + aux.MulScalar(Config.AuxWeight) : ce;
    }

    /// <summary>
    /// The last micro-batch's parts: "cross-entropy 2.3456 + 0.01 x aux 2.013 (balanced: 2)". Perfect balance gives
    /// aux = top-k, all tokens on one expert experts x top-k, so the number says at a glance whether routing collapses.
    /// </summary>
    public override string LossNote =>
        $"cross-entropy {LastCrossEntropy:F4} + {Config.AuxWeight:0.###} x aux {LastAuxLoss:F3} (balanced: {Config.TopK})";

    /// <summary>idx (B, T) continuing the cache's positions -> logits (B, T, V).</summary>
    public Tensor Forward(Tensor idx, KvCache? cache) => Logits(idx, cache, allPositions: true);
}

/// <summary>A pre-norm block with a mixture of experts for its feed-forward: x + attn(LN(x)), then x + MoE(LN(x)).</summary>
public sealed class MoeBlock : Module, ICausalBlock
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
