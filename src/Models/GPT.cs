using ManagedTensor.Models.Generation;
using ManagedTensor.Nn;

namespace ManagedTensor.Models;

/// <summary>
/// nanoGPT's model configuration. Defaults are GPT-2 small (124M); vocab 50304 is GPT-2's 50257 padded
/// up to a multiple of 64 for faster matmuls. Bias false drops the biases of Linear and LayerNorm
/// (slightly better and faster, as nanoGPT notes).
/// </summary>
public sealed record GptConfig(
    int BlockSize = 1024,
    int VocabSize = 50304,
    int NLayer = 12,
    int NHead = 12,
    int NEmbd = 768,
    double Dropout = 0.0,
    bool Bias = true) : IModelConfig
{
    public void Validate()
    {
        if (BlockSize <= 0 || VocabSize <= 0 || NLayer <= 0 || NHead <= 0 || NEmbd <= 0)
            throw new ArgumentException($"GPT config: every size must be positive: {this}");
        if (NEmbd % NHead != 0) throw new ArgumentException($"GPT config: n_embd {NEmbd} is not a multiple of n_head {NHead}");
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"GPT config: dropout {Dropout} must be in [0, 1)");
    }
}

/// <summary>What <see cref="GPT.Forward"/> returns: logits, and the mean cross-entropy when targets were given.</summary>
public sealed record GptOutput(Tensor Logits, Tensor? Loss);

/// <summary>
/// The GPT language model, as nanoGPT's model.py: token and position embeddings, n_layer pre-norm
/// transformer blocks, a final LayerNorm, and an output head tied to the token embedding (the same
/// (V, C) matrix embeds tokens and scores them; Press and Wolf 2017). Parameter names follow nanoGPT's
/// state dict ("transformer.h.0.attn.c_attn.weight"), which also matches Hugging Face's GPT-2 layout up
/// to Conv1D's transposed weights. Init as nanoGPT: N(0, 0.02) weights, zero biases, and residual
/// projections (c_proj) N(0, 0.02/sqrt(2 n_layer)) so the residual stream's variance does not grow
/// with depth (GPT-2 paper).
/// </summary>
public sealed class GPT : TrainableLM
{
    private readonly Dropout _drop;

    public GPT(GptConfig config, Generator initGen, Device? device = null, ulong dropoutSeed = 0)
    {
        config.Validate();
        Config = config;
        Device = device ?? Device.Cpu;
        DropoutGenerator = new Generator(dropoutSeed);
        double projStd = 0.02 / Math.Sqrt(2 * config.NLayer);
        // Children carry nanoGPT's ModuleDict prefix ("transformer.") in their names.
        Wte = Child("transformer.wte", new Embedding(config.VocabSize, config.NEmbd, initGen, Device, initStd: 0.02));
        Wpe = Child("transformer.wpe", new Embedding(config.BlockSize, config.NEmbd, initGen, Device, initStd: 0.02));
        _drop = Child("transformer.drop", new Dropout(config.Dropout, DropoutGenerator));
        H = Child("transformer.h", new ModuleList<Block>(Enumerable.Range(0, config.NLayer).Select(_ =>
            new Block(config.NEmbd, config.NHead, config.Bias, config.Dropout, projStd, initGen, DropoutGenerator, Device))));
        LnF = Child("transformer.ln_f", new LayerNorm(config.NEmbd, config.Bias, Device));
    }

    public GptConfig Config { get; }
    public override Device Device { get; }
    public override Generator DropoutGenerator { get; }
    public override string Architecture => "gpt";
    public override int VocabSize => Config.VocabSize;
    public override IModelConfig ConfigRecord => Config;

    public Embedding Wte { get; }
    public Embedding Wpe { get; }
    public ModuleList<Block> H { get; }
    public LayerNorm LnF { get; }

    /// <summary>
    /// idx (B, T) token ids, T &lt;= block size. With targets (B, T): logits (B, T, V) and the mean
    /// cross-entropy (targets of -1 ignored, as nanoGPT). Without: logits of the last position only,
    /// (B, 1, V), which is all generation needs. With <paramref name="cache"/> the tokens continue the
    /// cached ones (positions cache.Length, cache.Length + 1, ...) and are appended to it.
    /// </summary>
    public GptOutput Forward(Tensor idx, Tensor? targets = null, AttentionKvCache? cache = null)
    {
        var x = Body(idx, cache);                                      // (B, T, C)
        int t = idx.Shape[1];
        if (targets is null)
        {
            var last = x.Narrow(1, t - 1, 1);                         // (B, 1, C)
            return new GptOutput(Head(last), null);
        }
        if (!targets.Shape.AsSpan().SequenceEqual(idx.Shape))
            throw new ArgumentException($"GPT: targets {targets.Describe()} must have the shape of the inputs {idx.Describe()}");
        var logits = Head(x);                                          // (B, T, V)
        return new GptOutput(logits, Functional.CrossEntropy(logits, targets, ignoreIndex: -1));
    }

    public override Tensor Logits(Tensor idx) => Head(Body(idx, null));

    public override Tensor Loss(Tensor idx, Tensor targets) => Forward(idx, targets).Loss!;

    /// <summary>Embeddings, blocks and the final norm: the hidden states (B, T, C) the head scores.</summary>
    private Tensor Body(Tensor idx, AttentionKvCache? cache)
    {
        if (idx.Rank != 2) throw new ArgumentException($"GPT: input ids must be (B, T), got {idx.Describe()}");
        int b = idx.Shape[0], t = idx.Shape[1], start = cache?.Length ?? 0;
        if (start + t > Config.BlockSize)
            throw new ArgumentException($"GPT: cannot forward positions {start}..{start + t - 1}, block size is only {Config.BlockSize}");
        var pos = Tensor.Arange(start, start + t, 1, DType.I64, Device); // (T)
        var x = _drop.Forward(Wte.Forward(idx) + Wpe.Forward(pos));   // (B, T, C) + (T, C)
        for (int l = 0; l < H.Count; l++) x = H[l].Forward(x, cache?.Layers[l]);
        cache?.Advance(t);
        return LnF.Forward(x);
    }

    /// <summary>An empty KV cache for <paramref name="batch"/> sequences of up to the block size, on the model's device.</summary>
    public AttentionKvCache NewCache(int batch) =>
        new(Config.NLayer, batch, Config.NHead, Config.BlockSize, Config.NEmbd / Config.NHead, Wte.Weight.DType, Device);

    /// <summary>The tied output head: logits = x wte^T.</summary>
    private Tensor Head(Tensor x)
    {
        int c = Config.NEmbd;
        var rows = x.Reshape(-1, c).MatMul(Wte.Weight.MT);             // (N, V)
        return rows.Reshape([.. x.Shape[..^1], Config.VocabSize]);
    }

    /// <summary>
    /// Continues each sequence of <paramref name="idx"/> (B, T) by <paramref name="maxNewTokens"/> tokens,
    /// sampling with <paramref name="sampler"/> (temperature, top-k). <paramref name="onToken"/> sees each
    /// new token of row 0. The model sees the last block-size tokens, as nanoGPT's generate. With
    /// <paramref name="useCache"/> (the default) the prompt runs once and every later step runs only the
    /// new token against a KV cache; once the context fills the block, the window slides and each step
    /// runs the whole window again (position embeddings are absolute, so cached keys cannot be shifted).
    /// Without it, every step runs the whole context (nanoGPT's way; the cache's reference).
    /// </summary>
    public override List<int>[] Generate(Tensor idx, int maxNewTokens, Sampler sampler, Action<int>? onToken = null, bool useCache = true)
    {
        var rows = Enumerable.Range(0, idx.Shape[0]).Select(r => idx.Narrow(0, r, 1).Reshape(-1).ToDoubleArray().Select(v => (int)v).ToList()).ToArray();
        if (rows[0].Count == 0) throw new ArgumentException("GPT: generation needs at least one token to start from", nameof(idx));
        bool wasTraining = Training;
        Eval();
        using var cache = useCache ? NewCache(rows.Length) : null;
        using (GradMode.NoGrad())
        {
            for (int step = 0; step < maxNewTokens; step++)
            {
                // Only the newest token when the cache holds everything before it; else the whole window.
                bool incremental = cache is not null && cache.Length == rows[0].Count - 1 && cache.Length < Config.BlockSize;
                if (!incremental) cache?.Reset();
                int t = incremental ? 1 : Math.Min(rows[0].Count, Config.BlockSize);
                // A full window leaves no room for the next token: filling the cache would be wasted work.
                var stepCache = incremental || t < Config.BlockSize ? cache : null;
                var context = rows.SelectMany(r => r.Skip(r.Count - t).Select(v => (long)v)).ToArray();
                var logits = Forward(Tensor.FromArray(context, [rows.Length, t], Device), cache: stepCache).Logits.To(Device.Cpu).ToArray<float>(); // (B, 1, V)
                int v = Config.VocabSize;
                for (int r = 0; r < rows.Length; r++)
                {
                    int next = sampler.Sample(logits.AsSpan(r * v, v), rows[r]);
                    rows[r].Add(next);
                    if (r == 0) onToken?.Invoke(next);
                }
            }
        }
        if (wasTraining) Train();
        return rows;
    }
}
