namespace ManagedTensor.Models.Formats;

/// <summary>
/// Andrej Karpathy's llama2.c checkpoint, legacy version 0 (run.c's format):
///   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len   (vocab_size &lt; 0: separate classifier)
///   float32 token_embedding (vocab, dim)
///           rms_att (L, dim), wq (L, dim, dim), wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim)
///           rms_ffn (L, dim), w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim)
///           rms_final (dim), freq_cis_real (seq_len, head_size/2), freq_cis_imag (same; unused: RoPE is recomputed)
///           wcls (vocab, dim) only when vocab_size was negative
/// The file size must equal exactly what the header implies; that check runs before anything is allocated.
/// RoPE is the interleaved-pairs layout, theta 10000, RMSNorm eps 1e-5.
/// </summary>
public static class Llama2c
{
    public const int HeaderBytes = 7 * 4;

    // Limits far above any real model; they only stop absurd headers before arithmetic overflows.
    private const int MaxDim = 1 << 16, MaxHidden = 1 << 18, MaxLayers = 1024, MaxVocab = 1 << 22, MaxSeq = 1 << 20;

    /// <summary>Reads and validates the header; returns the config and whether the classifier is tied to the embedding.</summary>
    public static (LlamaConfig Config, bool Shared) ReadHeader(ModelFile f)
    {
        if (f.Length < HeaderBytes) throw f.Error($"header: file has {f.Length} bytes, a llama2.c checkpoint header needs {HeaderBytes}");
        f.Seek(0, "header");
        int dim = f.ReadI32("dim"), hidden = f.ReadI32("hidden_dim"), layers = f.ReadI32("n_layers"), heads = f.ReadI32("n_heads");
        int kvHeads = f.ReadI32("n_kv_heads"), vocab = f.ReadI32("vocab_size"), seq = f.ReadI32("seq_len");
        bool shared = vocab > 0;
        vocab = vocab == int.MinValue ? 0 : Math.Abs(vocab);
        Check(f, "dim", dim, 1, MaxDim);
        Check(f, "hidden_dim", hidden, 1, MaxHidden);
        Check(f, "n_layers", layers, 1, MaxLayers);
        Check(f, "n_heads", heads, 1, dim);
        Check(f, "n_kv_heads", kvHeads, 1, heads);
        Check(f, "vocab_size", vocab, 1, MaxVocab);
        Check(f, "seq_len", seq, 1, MaxSeq);
        if (dim % heads != 0) throw f.Error($"header: dim {dim} is not divisible by n_heads {heads}");
        if (heads % kvHeads != 0) throw f.Error($"header: n_heads {heads} is not divisible by n_kv_heads {kvHeads}");
        if (dim / heads % 2 != 0) throw f.Error($"header: head size {dim / heads} (dim / n_heads) must be even for RoPE");
        var config = new LlamaConfig(dim, hidden, layers, heads, kvHeads, vocab, seq);

        long expected = HeaderBytes + 4 * FloatCount(config, shared);
        if (f.Length != expected)
            throw f.Error($"file size {f.Length} bytes does not match the {expected} bytes implied by the header " +
                          $"(dim {dim}, hidden_dim {hidden}, n_layers {layers}, n_heads {heads}, n_kv_heads {kvHeads}, vocab_size {(shared ? vocab : -vocab)}, seq_len {seq}): " +
                          (f.Length < expected ? "truncated file" : "trailing bytes or not a version-0 llama2.c checkpoint"));
        return (config, shared);
    }

    private static void Check(ModelFile f, string field, int value, int min, int max)
    {
        if (value < min || value > max) throw f.Error($"header field {field} = {value} is outside [{min}, {max}]");
    }

    /// <summary>Number of float32 values after the header.</summary>
    public static long FloatCount(LlamaConfig c, bool shared)
    {
        long d = c.Dim, kv = c.KvDim, h = c.HiddenDim, L = c.NLayers;
        return c.VocabSize * d + L * (d + d * d + 2 * kv * d + d * d + d + 3 * h * d) + d
               + 2L * c.SeqLen * (c.HeadSize / 2) + (shared ? 0 : c.VocabSize * d);
    }

    /// <summary>
    /// The checkpoint as a <see cref="Llama"/> on <paramref name="device"/>, float32 weights under Hugging Face's names
    /// (wq -> q_proj, w1 -> gate_proj, w2 -> down_proj, w3 -> up_proj, rms_att -> input_layernorm, ...), interleaved RoPE.
    /// </summary>
    public static Llama Load(string path, Device? device = null, DType? floatWeights = null)
    {
        using var f = new ModelFile(path);
        var (c, shared) = ReadHeader(f);
        int L = c.NLayers, d = c.Dim, kv = c.KvDim, h = c.HiddenDim;
        var w = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        Tensor Read(string field, params int[] shape) => Tensor.FromArray(f.ReadF32Array(shape.Aggregate(1L, (a, b) => a * b), field), shape);
        // Each kind of weight is stored for all L layers back to back.
        void Layers(string field, string name, params int[] shape)
        {
            for (int l = 0; l < L; l++) w[$"model.layers.{l}.{name}"] = Read($"{field}[{l}]", shape);
        }
        w["model.embed_tokens.weight"] = Read("token_embedding", c.VocabSize, d);
        Layers("rms_att", "input_layernorm.weight", d);
        Layers("wq", "self_attn.q_proj.weight", d, d);
        Layers("wk", "self_attn.k_proj.weight", kv, d);
        Layers("wv", "self_attn.v_proj.weight", kv, d);
        Layers("wo", "self_attn.o_proj.weight", d, d);
        Layers("rms_ffn", "post_attention_layernorm.weight", d);
        Layers("w1", "mlp.gate_proj.weight", h, d);
        Layers("w2", "mlp.down_proj.weight", d, h);
        Layers("w3", "mlp.up_proj.weight", h, d);
        w["model.norm.weight"] = Read("rms_final", d);
        f.ReadBytes(2L * c.SeqLen * (c.HeadSize / 2) * 4, "freq_cis_real/imag");
        if (!shared) w["lm_head.weight"] = Read("wcls", c.VocabSize, d);
        return new Llama(c, w, device, floatWeights, source: path);
    }
}
