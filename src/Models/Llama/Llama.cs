using ManagedTensor.Nn;

namespace ManagedTensor.Models;

/// <summary>The shape of a Llama-family model. HeadSize = Dim / NHeads; keys and values have NKvHeads heads (GQA).</summary>
public sealed record LlamaConfig(
    int Dim, int HiddenDim, int NLayers, int NHeads, int NKvHeads, int VocabSize, int SeqLen,
    float NormEps = 1e-5f, float RopeTheta = 10000f, RopeLayout Rope = RopeLayout.Interleaved,
    Llama3RopeScaling? RopeScaling = null)
{
    public int HeadSize => Dim / NHeads;
    public int KvDim => HeadSize * NKvHeads;

    /// <summary>Throws unless the shape is consistent (heads divide dim, KV heads divide heads, even head size).</summary>
    public void Validate()
    {
        if (Dim <= 0 || HiddenDim <= 0 || NLayers <= 0 || NHeads <= 0 || NKvHeads <= 0 || VocabSize <= 0 || SeqLen <= 0)
            throw new ArgumentException($"Llama config has a non-positive size: {this}");
        if (Dim % NHeads != 0) throw new ArgumentException($"dim {Dim} is not divisible by n_heads {NHeads}");
        if (NHeads % NKvHeads != 0) throw new ArgumentException($"n_heads {NHeads} is not divisible by n_kv_heads {NKvHeads}");
        if (HeadSize % 2 != 0) throw new ArgumentException($"head size {HeadSize} must be even for RoPE");
        if (!(NormEps > 0)) throw new ArgumentException($"norm eps {NormEps} must be positive");
        if (!(RopeTheta > 1)) throw new ArgumentException($"rope theta {RopeTheta} must be above 1");
        if (SeqLen < 2) throw new ArgumentException($"context length {SeqLen}: at least 2 positions are needed (a prompt token and the next)");
    }

    /// <summary>Every weight's name (Hugging Face's, which the model's modules carry) and shape; lm_head only when untied.</summary>
    public IEnumerable<(string Name, int[] Shape)> WeightShapes(bool tied)
    {
        yield return ("model.embed_tokens.weight", [VocabSize, Dim]);
        for (int l = 0; l < NLayers; l++)
        {
            string p = $"model.layers.{l}.";
            yield return (p + "input_layernorm.weight", [Dim]);
            yield return (p + "self_attn.q_proj.weight", [Dim, Dim]);
            yield return (p + "self_attn.k_proj.weight", [KvDim, Dim]);
            yield return (p + "self_attn.v_proj.weight", [KvDim, Dim]);
            yield return (p + "self_attn.o_proj.weight", [Dim, Dim]);
            yield return (p + "post_attention_layernorm.weight", [Dim]);
            yield return (p + "mlp.gate_proj.weight", [HiddenDim, Dim]);
            yield return (p + "mlp.up_proj.weight", [HiddenDim, Dim]);
            yield return (p + "mlp.down_proj.weight", [Dim, HiddenDim]);
        }
        yield return ("model.norm.weight", [Dim]);
        if (!tied) yield return ("lm_head.weight", [VocabSize, Dim]);
    }
}

/// <summary>One decoder layer, pre-norm: x += attention(rms(x)), then x += mlp(rms(x)).</summary>
public sealed class LlamaBlock : Module
{
    public LlamaBlock(RmsNorm inputNorm, GroupedQueryAttention attention, RmsNorm postNorm, SwiGluMlp mlp)
    {
        InputNorm = Child("input_layernorm", inputNorm);
        Attention = Child("self_attn", attention);
        PostNorm = Child("post_attention_layernorm", postNorm);
        Mlp = Child("mlp", mlp);
    }

    public RmsNorm InputNorm { get; }
    public GroupedQueryAttention Attention { get; }
    public RmsNorm PostNorm { get; }
    public SwiGluMlp Mlp { get; }

    public Tensor Forward(Tensor x, KvCache.Layer? cache = null) // (B, T, C)
    {
        x += Attention.Forward(InputNorm.Forward(x), cache);
        return x + Mlp.Forward(PostNorm.Forward(x));
    }
}

/// <summary>
/// The Llama family (Llama 1-3, Mistral, TinyLlama, llama2.c's stories models), as Meta's model.py and
/// Hugging Face's LlamaForCausalLM compute it: token embedding, n_layers pre-norm blocks of grouped-query
/// attention with rotary positions and a SwiGLU MLP, a final RMS norm, and the output head
/// (lm_head, or the embedding itself when tied). Per layer, with rms(x) = w x / sqrt(mean(x^2) + eps):
///   x += Wo attention(RoPE(Wq rms(x)), RoPE(Wk rms(x)), Wv rms(x))       x += W2 (silu(W1 rms(x)) * W3 rms(x))
/// then logits = Wcls rms(x).
///
/// One model for every device and every weight format: each matrix is a <see cref="Linear"/>, so float
/// weights (F32, F16, BF16) are parameters multiplied by MatMul (and trained), and block-format weights
/// (Q8_0, Q4_0, Q4_K, ...) are frozen buffers multiplied by QMatMul, in their blocks on every device.
/// Activations, norms and the KV cache are float32 (float64 for a float64 model: gradient checks). Weights carry Hugging Face's names
/// (model.layers.0.self_attn.q_proj.weight), so every loader (llama2.c, GGUF, safetensors) hands over a
/// dictionary of those, and the state dict saves back as a Hugging Face checkpoint.
/// </summary>
public sealed class Llama : Module, ICausalLM, IActivationCheckpointing, IDisposable
{
    private readonly List<Tensor> _owned = [];

    /// <summary>
    /// The model over <paramref name="weights"/> (Hugging Face names, see <see cref="LlamaConfig.WeightShapes"/>; without
    /// lm_head.weight the head is tied to the embedding), each moved to <paramref name="device"/> as it is taken. Float
    /// matrices are converted to <paramref name="floatWeights"/> when given (f16 on a GPU); norm weights become float32.
    /// Every tensor must be present with its exact shape, and nothing else may be (<paramref name="source"/> names them in errors).
    /// </summary>
    public Llama(LlamaConfig config, IReadOnlyDictionary<string, Tensor> weights, Device? device = null, DType? floatWeights = null, string source = "weights")
    {
        config.Validate();
        Config = config;
        Device = device ?? Device.Cpu;
        bool tied = !weights.ContainsKey("lm_head.weight");
        var expected = config.WeightShapes(tied).ToDictionary(w => w.Name, w => w.Shape);
        var unknown = weights.Keys.Where(k => !expected.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException($"{source}: {unknown.Count} tensors are not part of a {config.NLayers}-layer Llama: {string.Join(", ", unknown.Take(5))}{(unknown.Count > 5 ? ", ..." : "")}");

        using var category = DeviceMemory.Category(MemoryCategory.Weights);
        Tensor Take(string name, bool matrix)
        {
            if (!weights.TryGetValue(name, out var t)) throw new ArgumentException($"{source}: tensor '{name}' is missing");
            var shape = expected[name];
            if (!t.Shape.AsSpan().SequenceEqual(shape))
                throw new ArgumentException($"{source}: tensor '{name}' has shape {Tensor.ShapeString(t.Shape)}, expected {Tensor.ShapeString(shape)}");
            using var noGrad = GradMode.NoGrad();
            var given = t.Storage;
            if (!matrix) t = t.To(weights["model.embed_tokens.weight"].DType == DType.F64 ? DType.F64 : DType.F32);
            else if (floatWeights is { } f && t.DType.IsFloat() && !t.DType.IsQuantized()) t = t.To(f);
            t = t.To(Device).Detach();
            t.Name = name;
            if (!ReferenceEquals(t.Storage, given)) _owned.Add(t); // a copy made here (moved or converted): freed by Dispose
            return t;
        }
        Linear Mat(string name) => new(Take(name, matrix: true));
        RmsNorm Norm(string name) => new(Take(name, matrix: false), config.NormEps);

        Rope = new RotaryEmbedding(config.HeadSize, config.RopeTheta, config.Rope, config.RopeScaling);
        EmbedTokens = Child("model.embed_tokens", new Embedding(Take("model.embed_tokens.weight", matrix: true)));
        Layers = Child("model.layers", new ModuleList<LlamaBlock>(Enumerable.Range(0, config.NLayers).Select(l =>
        {
            string p = $"model.layers.{l}.";
            var attention = new GroupedQueryAttention(Mat(p + "self_attn.q_proj.weight"), Mat(p + "self_attn.k_proj.weight"),
                Mat(p + "self_attn.v_proj.weight"), Mat(p + "self_attn.o_proj.weight"), config.NHeads, config.NKvHeads, Rope);
            var mlp = new SwiGluMlp(Mat(p + "mlp.gate_proj.weight"), Mat(p + "mlp.up_proj.weight"), Mat(p + "mlp.down_proj.weight"));
            return new LlamaBlock(Norm(p + "input_layernorm.weight"), attention, Norm(p + "post_attention_layernorm.weight"), mlp);
        })));
        FinalNorm = Child("model.norm", Norm("model.norm.weight"));
        LmHead = Child("lm_head", tied ? new Linear(EmbedTokens.Weight) : Mat("lm_head.weight"));
    }

    /// <summary>
    /// A freshly initialized model for training: N(0, 0.02) matrices, residual projections (o_proj, down_proj) N(0,
    /// 0.02 / sqrt(2 n_layers)) as GPT-2 does, norm weights 1, the head tied to the embedding when <paramref name="tied"/>.
    /// </summary>
    public static Llama Create(LlamaConfig config, Generator gen, Device? device = null, bool tied = true)
    {
        config.Validate();
        var dev = device ?? Device.Cpu;
        double projStd = 0.02 / Math.Sqrt(2 * config.NLayers);
        var weights = config.WeightShapes(tied).ToDictionary(w => w.Name, w =>
            w.Shape.Length == 1 ? Tensor.Ones(w.Shape, DType.F32, dev)
            : Init.Normal(w.Shape, w.Name.EndsWith("o_proj.weight", StringComparison.Ordinal) || w.Name.EndsWith("down_proj.weight", StringComparison.Ordinal) ? projStd : 0.02, gen, dev));
        return new Llama(config, weights, dev);
    }

    public LlamaConfig Config { get; }
    public Device Device { get; }
    public RotaryEmbedding Rope { get; }
    public Embedding EmbedTokens { get; }
    public ModuleList<LlamaBlock> Layers { get; }
    public RmsNorm FinalNorm { get; }
    public Linear LmHead { get; }

    /// <summary>Checkpoint each decoder layer in training (<see cref="IActivationCheckpointing"/>).</summary>
    public bool CheckpointActivations { get; set; }

    /// <summary>Whether the output head is the token embedding itself.</summary>
    public bool TiedHead => ReferenceEquals(LmHead.Weight, EmbedTokens.Weight);

    public string Architecture => "llama";
    public int VocabSize => Config.VocabSize;
    public int ContextLength => Config.SeqLen;
    public long WeightCount => this.WeightSize().Count;
    public long WeightBytes => this.WeightSize().Bytes;

    /// <summary>The dtype of activations, norms and the KV cache: float32, or float64 for a float64 model.</summary>
    public DType ActivationDType => EmbedTokens.Weight.DType == DType.F64 ? DType.F64 : DType.F32;

    /// <summary>An empty KV cache (activation dtype, Hkv heads) for <paramref name="batch"/> sequences of <paramref name="capacity"/> positions (0: the context length).</summary>
    public KvCache NewCache(int batch = 1, int capacity = 0)
    {
        if (capacity < 0 || capacity > Config.SeqLen)
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"cache length must be in [1, context length {Config.SeqLen}]");
        return new KvCache(Config.NLayers, batch, Config.NKvHeads, capacity == 0 ? Config.SeqLen : capacity, Config.HeadSize, ActivationDType, Device);
    }

    /// <summary>
    /// Logits of ids (B, T) placed at positions cache.Length, cache.Length + 1, ... (0, 1, ... without a cache),
    /// float32: (B, 1, V) for the last position, or (B, T, V) with <paramref name="allPositions"/>. The tokens' keys and
    /// values are appended to <paramref name="cache"/>.
    /// </summary>
    public Tensor Forward(Tensor ids, KvCache? cache = null, bool allPositions = false)
    {
        if (ids.Rank != 2) throw new ArgumentException($"Llama: input ids must be (B, T), got {ids.Describe()}");
        int t = ids.Shape[1], start = cache?.Length ?? 0, limit = cache?.Capacity ?? Config.SeqLen;
        if (t == 0) throw new ArgumentException("Llama: no tokens to run", nameof(ids));
        if (start + t > limit)
            throw new ArgumentException($"Llama: positions {start}..{start + t - 1} do not fit in {(cache is null ? "the context length" : "the cache's")} {limit} positions");
        var x = EmbedTokens.Forward(ids);                                // (B, T, C)
        if (x.DType != ActivationDType) x = x.To(ActivationDType);
        for (int l = 0; l < Layers.Count; l++)
        {
            var layer = Layers[l];
            x = CheckpointActivations && cache is null ? Checkpoint.Run(h => layer.Forward(h), x) : layer.Forward(x, cache?.Layers[l]);
        }
        cache?.Advance(t);
        if (!allPositions) x = x.Narrow(1, t - 1, 1);                    // generation needs the last position only
        return LmHead.Forward(FinalNorm.Forward(x));                         // (B, T or 1, V)
    }

    /// <summary>Training: logits (B, T, V) of ids (B, T) and the mean cross-entropy against targets (B, T) (-1 ignored).</summary>
    public (Tensor Logits, Tensor Loss) Forward(Tensor ids, Tensor targets)
    {
        if (!targets.Shape.AsSpan().SequenceEqual(ids.Shape))
            throw new ArgumentException($"Llama: targets {targets.Describe()} must have the shape of the inputs {ids.Describe()}");
        var logits = Forward(ids, cache: null, allPositions: true);
        return (logits, Functional.CrossEntropy(logits, targets, ignoreIndex: -1));
    }

    /// <summary>
    /// The row permutation between the two RoPE layouts for a Q or K weight (n_heads * head_size, dim).
    /// HF's convert_hf_to_gguf "permute" maps half-split rows to interleaved:
    ///   w.reshape(n_heads, 2, head_size/2, dim).swapaxes(1, 2).reshape(n_heads*head_size, dim)
    /// so interleaved row h*hs + 2i + j is half-split row h*hs + j*hs/2 + i (j = 0, 1).
    /// Permuting Q and K rows this way and switching <see cref="LlamaConfig.Rope"/> leaves the model's outputs unchanged.
    /// </summary>
    public static Tensor PermuteRopeRows(Tensor w, int nHeads, RopeLayout from, RopeLayout to)
    {
        if (from == to) return w;
        if (w.Rank != 2 || w.Shape[0] % nHeads != 0 || w.Shape[0] / nHeads % 2 != 0)
            throw new ArgumentException($"PermuteRopeRows: {w.Describe()} is not (n_heads {nHeads} * an even head size, dim)");
        int hs = w.Shape[0] / nHeads, half = hs / 2, cols = w.Shape[1];
        // Half-split rows viewed as (heads, 2, hs/2, dim) become interleaved (heads, hs/2, 2, dim), and back.
        return from == RopeLayout.HalfSplit
            ? w.Reshape(nHeads, 2, half, cols).Transpose(1, 2).Contiguous().Reshape(w.Shape[0], cols)
            : w.Reshape(nHeads, half, 2, cols).Transpose(1, 2).Contiguous().Reshape(w.Shape[0], cols);
    }

    /// <summary>
    /// Frees the weights this model made (moved to its device or converted; device memory on a GPU) and the RoPE tables.
    /// Tensors handed over as they were stay with their owner (another model may share them).
    /// </summary>
    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
        Rope.Dispose();
    }
}
