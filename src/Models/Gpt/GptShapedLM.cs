using ManagedTensor.Models.Generation;
using ManagedTensor.Nn;

namespace ManagedTensor.Models;

/// <summary>The sizes every GPT-shaped model's config has (<see cref="GptShapedLM{TConfig, TBlock}"/>).</summary>
public interface IGptShape : IModelConfig
{
    int BlockSize { get; }
    int VocabSize { get; }
    int NLayer { get; }
    int NHead { get; }
    int NEmbd { get; }
    double Dropout { get; }
}

/// <summary>A transformer block of a GPT-shaped model: (B, T, C) -> (B, T, C); with a cache, the T positions follow the cached ones.</summary>
public interface ICausalBlock
{
    Tensor Forward(Tensor x, KvCache.Layer? cache);
}

/// <summary>
/// What GPT, MoE-GPT and BitNet-GPT share, nanoGPT's skeleton around their blocks: token and position embeddings
/// (N(0, 0.02)) and dropout, n_layer blocks on the residual stream, a final LayerNorm and the output head tied to the
/// token embedding (logits = x wte^T), with GPT's KV cache for decoding. A model adds only its block (and its loss,
/// its linear type). Children are registered in the order wte, wpe, drop, h, ln_f, so the init draws and the
/// parameter names ("{prefix}h.0....") are those each model had on its own.
/// </summary>
public abstract class GptShapedLM<TConfig, TBlock> : TrainableLM, ICausalLM
    where TConfig : IGptShape
    where TBlock : Module, ICausalBlock
{
    private readonly Dropout _drop;
    private readonly string _name;

    /// <param name="name">the model's name in messages ("GPT")</param>
    /// <param name="prefix">the children's name prefix ("transformer." for nanoGPT's state dict, or "")</param>
    /// <param name="lnFBias">whether the final LayerNorm has a bias</param>
    /// <param name="newBlock">makes one block from the dropout generator and the device (called n_layer times, in order)</param>
    protected GptShapedLM(TConfig config, string name, string prefix, bool lnFBias, Generator initGen, Device? device, ulong dropoutSeed,
        Func<Generator, Device, TBlock> newBlock) : base(config, device, dropoutSeed)
    {
        Config = config;
        _name = name;
        Wte = Child(prefix + "wte", new Embedding(config.VocabSize, config.NEmbd, initGen, Device, initStd: 0.02));
        Wpe = Child(prefix + "wpe", new Embedding(config.BlockSize, config.NEmbd, initGen, Device, initStd: 0.02));
        _drop = Child(prefix + "drop", new Dropout(config.Dropout, DropoutGenerator));
        H = Child(prefix + "h", new ModuleList<TBlock>(Enumerable.Range(0, config.NLayer).Select(_ => newBlock(DropoutGenerator, Device))));
        LnF = Child(prefix + "ln_f", new LayerNorm(config.NEmbd, lnFBias, Device));
    }

    /// <summary>nanoGPT's init std of the residual projections, 0.02 / sqrt(2 n_layer): two residual branches per layer, so the stream's variance does not grow with depth.</summary>
    protected static double ResidualProjStd(int nLayer) => 0.02 / Math.Sqrt(2 * nLayer);

    public TConfig Config { get; }
    public override int VocabSize => Config.VocabSize;
    public int ContextLength => Config.BlockSize;
    public long WeightCount => this.WeightSize().Count;
    public long WeightBytes => this.WeightSize().Bytes;

    public Embedding Wte { get; }
    public Embedding Wpe { get; }
    public ModuleList<TBlock> H { get; }
    public LayerNorm LnF { get; }

    /// <summary>Whether training runs each block under <see cref="Checkpoint"/>; a model that supports it exposes it (<see cref="IActivationCheckpointing"/>).</summary>
    protected bool CheckpointBlocks { get; set; }

    /// <summary>Logits (B, T, V) of every position, for the trainer.</summary>
    public override Tensor Logits(Tensor idx) => Logits(idx, null, allPositions: true);

    Tensor ICausalLM.Forward(Tensor ids, KvCache? cache, bool allPositions) => Logits(ids, cache, allPositions);

    /// <summary>
    /// idx (B, T) at positions cache.Length, cache.Length + 1, ... (0, 1, ... without a cache; the tokens join the
    /// cache): logits (B, 1, V) of the last position, or (B, T, V) with <paramref name="allPositions"/>.
    /// </summary>
    protected Tensor Logits(Tensor idx, KvCache? cache, bool allPositions)
    {
        if (idx.Rank != 2) throw new ArgumentException($"{_name}: input ids must be (B, T), got {idx.Describe()}");
        int t = idx.Shape[1], start = cache?.Length ?? 0;
        if (start + t > Config.BlockSize)
            throw new ArgumentException($"{_name}: cannot forward positions {start}..{start + t - 1}, block size is only {Config.BlockSize}");
        var pos = Tensor.Arange(start, start + t, 1, DType.I64, Device); // (T)
        var x = _drop.Forward(Wte.Forward(idx) + Wpe.Forward(pos));   // (B, T, C) + (T, C)
        for (int l = 0; l < H.Count; l++)
        {
            var block = H[l];
            x = CheckpointBlocks && cache is null ? Checkpoint.Run(h => block.Forward(h, null), x, DropoutGenerator) : block.Forward(x, cache?.Layers[l]);
        }
        cache?.Advance(t);
        x = LnF.Forward(allPositions ? x : x.Narrow(1, t - 1, 1));    // (B, T or 1, C)
        var rows = x.Reshape(-1, Config.NEmbd).MatMul(Wte.Weight.MT);   // (N, V): the tied head
        return rows.Reshape([.. x.Shape[..^1], Config.VocabSize]);      // (B, T or 1, V)
    }

    /// <summary>An empty KV cache for <paramref name="batch"/> sequences of up to <paramref name="capacity"/> positions (0: the block size), on the model's device.</summary>
    public KvCache NewCache(int batch = 1, int capacity = 0)
    {
        if (capacity < 0 || capacity > Config.BlockSize)
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"cache length must be in [1, block size {Config.BlockSize}]");
        return new(Config.NLayer, batch, Config.NHead, capacity == 0 ? Config.BlockSize : capacity, Config.NEmbd / Config.NHead, Wte.Weight.DType, Device);
    }

    /// <summary>
    /// As nanoGPT's generate (the model sees the last block-size tokens): the prompt once, then each new token against
    /// the KV cache; a full block slides the window (<see cref="WindowedGeneration"/>).
    /// </summary>
    public override List<int>[] Generate(Tensor idx, int maxNewTokens, Sampler sampler, Action<int>? onToken = null, bool useCache = true) =>
        WindowedGeneration.Generate(this, idx, maxNewTokens, sampler, onToken, useCache);
}
