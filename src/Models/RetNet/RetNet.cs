using System.Runtime.CompilerServices;
using ManagedTensor.Nn;

namespace ManagedTensor.Models.RetNet;

/// <summary>
/// A RetNet's shape. As torchscale's RetNet defaults: value dim 2 * n_embd (value_factor 2), feed-forward width
/// 2 * n_embd, so a layer holds 12 n_embd^2 weights like a GPT block. Key heads are n_embd / n_head wide (even).
/// </summary>
public sealed record RetNetConfig(int BlockSize = 64, int VocabSize = 65, int NLayer = 4, int NHead = 4, int NEmbd = 128, double Dropout = 0.0) : IModelConfig
{
    public void Validate()
    {
        if (BlockSize <= 0 || VocabSize <= 0 || NLayer <= 0 || NHead <= 0 || NEmbd <= 0)
            throw new ArgumentException($"RetNet config: every size must be positive: {this}");
        if (NEmbd % NHead != 0 || NEmbd / NHead % 2 != 0)
            throw new ArgumentException($"RetNet config: n_embd {NEmbd} / n_head {NHead} must be an even whole number (the key head size)");
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"RetNet config: dropout {Dropout} must be in [0, 1)");
    }
}

/// <summary>
/// The Retentive Network language model (Sun et al. 2023), as torchscale's RetNetDecoder: token embeddings (no
/// position embeddings: retention rotates q and k by position), n_layer pre-norm blocks
/// x + retention(LN(x)), x + FFN(LN(x)) with a GELU FFN, a final LayerNorm and the head tied to the embedding.
/// Training runs retention's parallel form; <see cref="Step"/> its recurrent form, one token at a cost that does
/// not grow with the context (a (dk, dv) state per head and layer); <see cref="Forward"/> offers the chunkwise
/// form too. All three give the same logits (tests).
/// </summary>
public sealed class RetNetLM : RecurrentLM
{
    private readonly Dropout _drop;
    private readonly ConditionalWeakTable<RecurrentState, StrongBox<int>> _positions = new();

    public RetNetLM(RetNetConfig config, Generator initGen, Device? device = null, ulong dropoutSeed = 0) : base(config, device, dropoutSeed)
    {
        Config = config;
        int c = config.NEmbd;
        Wte = Child("wte", new Embedding(config.VocabSize, c, initGen, Device, initStd: 0.02));
        _drop = Child("drop", new Dropout(config.Dropout, DropoutGenerator));
        Layers = Child("layers", new ModuleList<RetNetBlock>(Enumerable.Range(0, config.NLayer).Select(_ =>
            new RetNetBlock(c, config.NHead, config.Dropout, initGen, DropoutGenerator, Device))));
        LnF = Child("ln_f", new LayerNorm(c, bias: false, Device));
    }

    public RetNetConfig Config { get; }
    public override string Architecture => "retnet";
    public override int VocabSize => Config.VocabSize;
    public Embedding Wte { get; }
    public ModuleList<RetNetBlock> Layers { get; }
    public LayerNorm LnF { get; }

    public override Tensor Logits(Tensor idx) => Forward(idx);

    /// <summary>idx (B, T) -> logits (B, T, V), by retention's parallel or chunkwise form.</summary>
    public Tensor Forward(Tensor idx, RetentionForm form = RetentionForm.Parallel, int chunk = 16)
    {
        if (idx.Rank != 2) throw new ArgumentException($"RetNet: input ids must be (B, T), got {idx.Describe()}");
        var x = _drop.Forward(Wte.Forward(idx));                                // (B, T, C)
        for (int l = 0; l < Layers.Count; l++) x = Layers[l].Forward(x, form, chunk);
        return Head(LnF.Forward(x));
    }

    public override RecurrentState NewState(int batch)
    {
        var state = new RecurrentState(batch, Config.NLayer, 1);
        _positions.Add(state, new StrongBox<int>(0));
        return state;
    }

    /// <summary>ids (B) at the state's next position -> logits (B, V); each layer's (B, H, dk, dv) state advances.</summary>
    public override Tensor Step(Tensor ids, RecurrentState state)
    {
        if (!_positions.TryGetValue(state, out var position)) throw new ArgumentException("RetNet: the state was not made by this model's NewState");
        if (ids.Rank != 1 || ids.Shape[0] != state.Batch) throw new ArgumentException($"RetNet: step ids {ids.Describe()} must be ({state.Batch})");
        int n = position.Value++;
        var x = Wte.Forward(ids.Reshape(state.Batch, 1));                        // (B, 1, C)
        for (int l = 0; l < Layers.Count; l++)
        {
            var block = Layers[l];
            var (y, s) = block.Retention.Step(block.Ln1.Forward(x), n == 0 ? null : state[l, 0], n);
            state[l, 0] = s;
            x += y;
            x += block.Ffn(block.Ln2.Forward(x));
        }
        return Head(LnF.Forward(x)).Reshape(state.Batch, Config.VocabSize);
    }

    /// <summary>The tied output head: logits = x wte^T.</summary>
    private Tensor Head(Tensor x) => x.Reshape(-1, Config.NEmbd).MatMul(Wte.Weight.MT).Reshape([.. x.Shape[..^1], Config.VocabSize]);
}

/// <summary>One RetNet layer: x + retention(LN(x)), then x + FFN(LN(x)), FFN = C -> 2C, GELU, 2C -> C.</summary>
public sealed class RetNetBlock : Module
{
    private readonly Dropout _dropout;

    public RetNetBlock(int c, int heads, double dropout, Generator initGen, Generator dropoutGen, Device device)
    {
        Ln1 = Child("ln_1", new LayerNorm(c, bias: false, device));
        Retention = Child("retention", new Retention(c, heads, 2 * c, initGen, device));
        Ln2 = Child("ln_2", new LayerNorm(c, bias: false, device));
        Fc1 = Child("fc1", new Linear(c, 2 * c, false, initGen, device, initStd: 0.02));
        Fc2 = Child("fc2", new Linear(2 * c, c, false, initGen, device, initStd: 0.02));
        _dropout = Child("dropout", new Dropout(dropout, dropoutGen));
    }

    public LayerNorm Ln1 { get; }
    public Retention Retention { get; }
    public LayerNorm Ln2 { get; }
    public Linear Fc1 { get; }
    public Linear Fc2 { get; }

    public Tensor Ffn(Tensor x) => _dropout.Forward(Fc2.Forward(Fc1.Forward(x).Gelu()));

    public Tensor Forward(Tensor x, RetentionForm form, int chunk) // (B, T, C)
    {
        x += _dropout.Forward(Retention.Forward(Ln1.Forward(x), form, chunk));
        return x + Ffn(Ln2.Forward(x));
    }
}
