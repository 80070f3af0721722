using ManagedTensor.Nn;

namespace ManagedTensor.Models.Formats;

/// <summary>
/// Hugging Face LlamaForCausalLM checkpoints (also MistralForCausalLM, the same layout):
///   config.json   hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads (GQA),
///                 vocab_size, max_position_embeddings, rms_norm_eps, rope_theta, rope_scaling (null or llama3),
///                 tie_word_embeddings, bos_token_id, eos_token_id (one id or a list)
///   tensors       model.embed_tokens.weight (vocab, dim)
///                 model.layers.N.input_layernorm.weight (dim)
///                 model.layers.N.self_attn.{q,k,v,o}_proj.weight  (heads*hs, dim), (kv*hs, dim), (kv*hs, dim), (dim, heads*hs)
///                 model.layers.N.post_attention_layernorm.weight (dim)
///                 model.layers.N.mlp.{gate,up,down}_proj.weight   (hidden, dim), (hidden, dim), (dim, hidden)
///                 model.norm.weight (dim), lm_head.weight (vocab, dim) unless tied to the embedding
/// Weights are nn.Linear's (out, in), the layout <see cref="Nn.Linear"/> uses, and the model's weight names are these, so nothing is renamed or transposed. HF keeps Q/K rows
/// in the half-split RoPE layout (rotate_half pairs i and i + hs/2), so the model runs with <see cref="RopeLayout.HalfSplit"/>
/// and no permutation (GGUF files hold the same weights permuted to the interleaved layout; see <see cref="GgufLlama"/>).
/// F16 and BF16 weights stay 16-bit tensors.
/// </summary>
public static class HfLlama
{
    public static readonly string[] Architectures = ["LlamaForCausalLM", "MistralForCausalLM"];
    private static readonly string[] ModelTypes = ["llama", "mistral"];

    // Far above any real model; they stop absurd values before arithmetic overflows or huge allocations.
    private const int MaxDim = 1 << 16, MaxHidden = 1 << 18, MaxLayers = 1024, MaxVocab = 1 << 22, MaxSeq = 1 << 24;

    /// <summary>The model's shape from config.json, validated. Mistral's sliding window (when shorter) caps the context so attention stays exact.</summary>
    public static LlamaConfig ReadConfig(HfJson cfg)
    {
        var archs = cfg.Get("architectures") is { ValueKind: System.Text.Json.JsonValueKind.Array } a
            ? a.EnumerateArray().Select(e => e.ToString()).ToArray() : [];
        string? type = cfg.GetString("model_type");
        if (!archs.Any(Architectures.Contains) && !(type is not null && ModelTypes.Contains(type)))
            throw cfg.Error($"architectures [{string.Join(", ", archs)}], model_type '{type}': only {string.Join(" and ", Architectures)} (model_type llama, mistral) are read");
        if (cfg.GetString("hidden_act") is { } act && act != "silu")
            throw cfg.Error($"'hidden_act' is '{act}'; the Llama MLP here is SwiGLU with silu");
        foreach (var bias in new[] { "attention_bias", "mlp_bias" })
            if (cfg.GetBool(bias, false)) throw cfg.Error($"'{bias}' is true; this loader reads Llama without biases");

        int dim = Range(cfg, "hidden_size", cfg.GetInt("hidden_size"), MaxDim);
        int hidden = Range(cfg, "intermediate_size", cfg.GetInt("intermediate_size"), MaxHidden);
        int layers = Range(cfg, "num_hidden_layers", cfg.GetInt("num_hidden_layers"), MaxLayers);
        int heads = Range(cfg, "num_attention_heads", cfg.GetInt("num_attention_heads"), dim);
        int kvHeads = Range(cfg, "num_key_value_heads", cfg.GetInt("num_key_value_heads", heads), heads);
        int vocab = Range(cfg, "vocab_size", cfg.GetInt("vocab_size"), MaxVocab);
        int seq = Range(cfg, "max_position_embeddings", cfg.GetInt("max_position_embeddings", 2048), MaxSeq);
        if (seq < 2) throw cfg.Error($"'max_position_embeddings' is {seq}: at least 2 positions are needed (a prompt token and the next)");
        if (cfg.Has("sliding_window") && cfg.GetInt("sliding_window") is int window && window > 0 && window < seq) seq = window;
        if (dim % heads != 0) throw cfg.Error($"hidden_size {dim} is not divisible by num_attention_heads {heads}");
        if (cfg.Has("head_dim") && cfg.GetInt("head_dim") != dim / heads)
            throw cfg.Error($"'head_dim' is {cfg.GetInt("head_dim")}, but hidden_size / num_attention_heads = {dim / heads}; a separate head_dim is not supported");
        if (heads % kvHeads != 0) throw cfg.Error($"num_attention_heads {heads} is not divisible by num_key_value_heads {kvHeads}");
        if (dim / heads % 2 != 0) throw cfg.Error($"head size {dim / heads} must be even for RoPE");

        float eps = cfg.GetFloat("rms_norm_eps", 1e-6f), theta = cfg.GetFloat("rope_theta", 10000f);
        if (!(eps > 0 && eps < 1)) throw cfg.Error($"'rms_norm_eps' is {eps}, expected a value in (0, 1)");
        if (!(theta > 1)) throw cfg.Error($"'rope_theta' is {theta}, expected a value above 1");
        return new LlamaConfig(dim, hidden, layers, heads, kvHeads, vocab, seq, eps, theta, RopeLayout.HalfSplit, RopeScaling(cfg));
    }

    private static int Range(HfJson cfg, string key, int v, int max) =>
        v >= 1 && v <= max ? v : throw cfg.Error($"'{key}' is {v}, expected a value in [1, {max}]");

    private static Llama3RopeScaling? RopeScaling(HfJson cfg)
    {
        if (cfg.GetObject("rope_scaling") is not { } s) return null;
        string? kind = s.GetString("rope_type") ?? s.GetString("type");
        if (kind is null or "default") return null;
        if (kind != "llama3") throw s.Error($"'rope_scaling.rope_type' is '{kind}'; only 'llama3' (and 'default') are supported");
        var r = new Llama3RopeScaling(s.GetFloat("factor", float.NaN), s.GetFloat("low_freq_factor", float.NaN),
            s.GetFloat("high_freq_factor", float.NaN), s.GetInt("original_max_position_embeddings"));
        if (!(r.Factor >= 1)) throw s.Error($"'rope_scaling.factor' is {r.Factor}, expected a number >= 1");
        if (!(r.LowFreqFactor > 0) || !(r.HighFreqFactor > r.LowFreqFactor))
            throw s.Error($"'rope_scaling' low_freq_factor {r.LowFreqFactor} / high_freq_factor {r.HighFreqFactor}: need 0 < low < high");
        if (r.OriginalContextLength < 1) throw s.Error($"'rope_scaling.original_max_position_embeddings' is {r.OriginalContextLength}, expected >= 1");
        return r;
    }

    /// <summary>What each weight is, for error messages.</summary>
    private static string Meaning(string name) => name switch
    {
        _ when name.EndsWith("q_proj.weight", StringComparison.Ordinal) => "(num_attention_heads * head_size, hidden_size)",
        _ when name.EndsWith("k_proj.weight", StringComparison.Ordinal) || name.EndsWith("v_proj.weight", StringComparison.Ordinal) => "(num_key_value_heads * head_size, hidden_size)",
        _ when name.EndsWith("o_proj.weight", StringComparison.Ordinal) => "(hidden_size, num_attention_heads * head_size)",
        _ when name.EndsWith("gate_proj.weight", StringComparison.Ordinal) || name.EndsWith("up_proj.weight", StringComparison.Ordinal) => "(intermediate_size, hidden_size)",
        _ when name.EndsWith("down_proj.weight", StringComparison.Ordinal) => "(hidden_size, intermediate_size)",
        "model.embed_tokens.weight" or "lm_head.weight" => "(vocab_size, hidden_size)",
        _ => "(hidden_size)",
    };

    /// <summary>
    /// Reads and checks every weight (kept in its stored dtype: F16 and BF16 stay 16-bit) into a <see cref="Llama"/> on
    /// <paramref name="device"/>; tensors the model does not use are an error (they usually mean another architecture).
    /// </summary>
    public static Llama LoadModel(HfCheckpoint ck, Device? device = null, DType? floatWeights = null)
    {
        var c = ReadConfig(ck.Config);
        bool tied = ck.Config.GetBool("tie_word_embeddings", false);
        if (!tied && !ck.Has("lm_head.weight"))
            throw new InvalidModelFileException(ck.WeightsPath, "tensor 'lm_head.weight' is missing and config.json has tie_word_embeddings false");
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, shape) in c.WeightShapes(tied))
            weights[name] = ck.Weight(name, shape, Meaning(name));
        for (int l = 0; l < c.NLayers; l++) ck.Skip($"model.layers.{l}.self_attn.rotary_emb.inv_freq"); // a buffer older exports saved; RoPE is recomputed
        if (tied) ck.Skip("lm_head.weight");

        var unused = ck.Unread.Order(StringComparer.Ordinal).ToList();
        if (unused.Count > 0)
            throw new InvalidModelFileException(ck.WeightsPath, $"{unused.Count} tensors are not part of LlamaForCausalLM with {c.NLayers} layers: " +
                string.Join(", ", unused.Take(5)) + (unused.Count > 5 ? ", ..." : "") + " (biases or extra layers belong to another architecture)");
        return new Llama(c, weights, device, floatWeights, ck.WeightsPath);
    }

    /// <summary>End-of-sequence ids from config.json and generation_config.json (either may hold one id or a list).</summary>
    public static int[] EosTokenIds(HfCheckpoint ck)
    {
        var ids = new List<int>(ck.Config.GetIntList("eos_token_id"));
        string gen = Path.Combine(ck.Directory, "generation_config.json");
        if (File.Exists(gen)) ids.AddRange(HfJson.Load(gen).GetIntList("eos_token_id"));
        return ids.Distinct().ToArray();
    }
}
