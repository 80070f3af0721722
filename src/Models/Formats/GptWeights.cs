using ManagedTensor.Nn;

namespace ManagedTensor.Models.Formats;

/// <summary>
/// OpenAI's GPT-2 weights into the <see cref="GPT"/> model (nanoGPT's parameter names), from two files:
///   Hugging Face GPT2LMHeadModel: config.json (n_embd, n_layer, n_head, n_positions, vocab_size, layer_norm_epsilon,
///     activation_function) and model.safetensors with wte, wpe, h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc,
///     mlp.c_proj}, ln_f (keys with or without the "transformer." prefix). GPT-2's Conv1D layers store W as (in, out) and
///     compute x W + b; nn.Linear stores (out, in) and computes x W^T + b, so the four Conv1D weights are transposed.
///     c_attn stays fused (C -> 3C, q | k | v side by side), as the GPT model keeps it. The head is tied to wte; the
///     causal-mask buffers (h.N.attn.bias, h.N.attn.masked_bias) are not parameters and are skipped.
///   llm.c's gpt2_124M.bin (<see cref="LlmC"/>): Linear weights already (out, in). The embedding is padded to
///     padded_vocab_size rows (zeros past vocab_size); only the vocab_size real rows are kept, because a zero row scores 0
///     while GPT-2's real logits are mostly far below 0, so padded ids would win every sample.
/// GPT-2 was trained with the tanh approximation of GELU (gelu_new); the GPT model uses the exact erf form, as nanoGPT
/// does when it loads these weights: logits differ by about 1e-3.
/// </summary>
public static class GptWeights
{
    private static readonly string[] Conv1D = ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"];

    /// <summary>The GPT shape from a GPT-2 config.json, refusing variants the GPT model does not compute.</summary>
    public static GptConfig ReadHfConfig(HfJson cfg)
    {
        var archs = cfg.Get("architectures") is { ValueKind: System.Text.Json.JsonValueKind.Array } a ? a.EnumerateArray().Select(e => e.ToString()).ToArray() : [];
        if (!archs.Contains("GPT2LMHeadModel") && cfg.GetString("model_type") != "gpt2")
            throw cfg.Error($"architectures [{string.Join(", ", archs)}], model_type '{cfg.GetString("model_type")}': expected GPT2LMHeadModel (model_type gpt2)");
        int c = cfg.GetInt("n_embd"), layers = cfg.GetInt("n_layer"), heads = cfg.GetInt("n_head"), vocab = cfg.GetInt("vocab_size");
        int ctx = cfg.GetInt("n_positions", cfg.GetInt("n_ctx", 1024));
        foreach (var (key, v, max) in new[] { ("n_embd", c, 1 << 16), ("n_layer", layers, 1024), ("n_head", heads, 1024), ("vocab_size", vocab, 1 << 22), ("n_positions", ctx, 1 << 20) })
            if (v < 1 || v > max) throw cfg.Error($"'{key}' is {v}, expected a value in [1, {max}]");
        if (c % heads != 0) throw cfg.Error($"n_embd {c} is not divisible by n_head {heads}");
        if (cfg.Has("n_inner") && cfg.GetInt("n_inner") != 4 * c) throw cfg.Error($"'n_inner' is {cfg.GetInt("n_inner")}; the GPT model's MLP is 4 * n_embd = {4 * c}");
        float eps = cfg.GetFloat("layer_norm_epsilon", 1e-5f);
        if (Math.Abs(eps - 1e-5f) > 1e-9f) throw cfg.Error($"'layer_norm_epsilon' is {eps}; the GPT model's LayerNorm uses 1e-5");
        if (cfg.GetString("activation_function") is { } act && act is not ("gelu_new" or "gelu" or "gelu_pytorch_tanh"))
            throw cfg.Error($"'activation_function' is '{act}'; the GPT model's MLP uses GELU");
        if (!cfg.GetBool("tie_word_embeddings", true)) throw cfg.Error("'tie_word_embeddings' is false; the GPT model's head is tied to wte");
        if (cfg.GetBool("scale_attn_by_inverse_layer_idx", false)) throw cfg.Error("'scale_attn_by_inverse_layer_idx' is true; not supported");
        if (cfg.GetBool("add_cross_attention", false)) throw cfg.Error("'add_cross_attention' is true; not supported");
        return new GptConfig(BlockSize: ctx, VocabSize: vocab, NLayer: layers, NHead: heads, NEmbd: c, Dropout: 0, Bias: true);
    }

    /// <summary>A Hugging Face GPT-2 checkpoint (directory or its config.json) as a GPT model in eval mode.</summary>
    public static GPT LoadHf(string path, Device? device = null)
    {
        using var ck = HfCheckpoint.Open(path);
        return LoadHf(ck, device);
    }

    public static GPT LoadHf(HfCheckpoint ck, Device? device = null)
    {
        var cfg = ReadHfConfig(ck.Config);
        int c = cfg.NEmbd;
        string p = ck.Has("transformer.wte.weight") ? "transformer." : "";
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["transformer.wte.weight"] = ck.F32(p + "wte.weight", [cfg.VocabSize, c], "(vocab_size, n_embd)"),
            ["transformer.wpe.weight"] = ck.F32(p + "wpe.weight", [cfg.BlockSize, c], "(n_positions, n_embd)"),
        };
        (string, int[])[] shapes =
        [
            ("ln_1.weight", [c]), ("ln_1.bias", [c]), ("attn.c_attn.weight", [c, 3 * c]), ("attn.c_attn.bias", [3 * c]),
            ("attn.c_proj.weight", [c, c]), ("attn.c_proj.bias", [c]), ("ln_2.weight", [c]), ("ln_2.bias", [c]),
            ("mlp.c_fc.weight", [c, 4 * c]), ("mlp.c_fc.bias", [4 * c]), ("mlp.c_proj.weight", [4 * c, c]), ("mlp.c_proj.bias", [c]),
        ];
        for (int l = 0; l < cfg.NLayer; l++)
        {
            foreach (var (name, shape) in shapes)
            {
                var t = ck.F32($"{p}h.{l}.{name}", shape, Conv1D.Contains(name) ? "Conv1D (in, out)" : "");
                sd[$"transformer.h.{l}.{name}"] = Conv1D.Contains(name) ? Gpt2HfMapping.Transpose2D(t) : t; // (in, out) -> (out, in)
            }
            ck.Skip($"{p}h.{l}.attn.bias");        // causal-mask buffers, not parameters
            ck.Skip($"{p}h.{l}.attn.masked_bias");
        }
        sd["transformer.ln_f.weight"] = ck.F32(p + "ln_f.weight", [c]);
        sd["transformer.ln_f.bias"] = ck.F32(p + "ln_f.bias", [c]);
        if (ck.Has("lm_head.weight")) ck.F32("lm_head.weight", [cfg.VocabSize, c], "(vocab_size, n_embd), tied to wte"); // checked, then dropped: the head is wte
        var unused = ck.Unread.Order(StringComparer.Ordinal).ToList();
        if (unused.Count > 0)
            throw new InvalidModelFileException(ck.WeightsPath, $"{unused.Count} tensors are not part of GPT-2 with {cfg.NLayer} layers: {string.Join(", ", unused.Take(5))}{(unused.Count > 5 ? ", ..." : "")}");
        return Build(cfg, sd, ck.WeightsPath, device);
    }

    /// <summary>llm.c's gpt2_124M.bin (float32 or bfloat16) as a GPT model over the real (unpadded) vocabulary.</summary>
    public static GPT LoadLlmC(string path, Device? device = null)
    {
        var (s, parameters) = LlmC.LoadGpt2(path);
        var cfg = new GptConfig(BlockSize: s.MaxSeqLen, VocabSize: s.VocabSize, NLayer: s.NLayers, NHead: s.NHeads, NEmbd: s.Channels, Dropout: 0, Bias: true);
        parameters.Remove("lm_head.weight"); // the same tensor as wte: the GPT model ties it itself
        parameters["transformer.wte.weight"] = parameters["transformer.wte.weight"].Narrow(0, 0, s.VocabSize); // (Vp, C) -> (V, C)
        return Build(cfg, parameters, path, device);
    }

    /// <summary>GPT-2 from a Hugging Face checkpoint (a directory or its config.json) or from an llm.c .bin file.</summary>
    public static GPT Load(string path, Device? device = null) =>
        HfCheckpoint.IsCheckpoint(path) ? LoadHf(path, device) : LoadLlmC(path, device);

    private static GPT Build(GptConfig cfg, Dictionary<string, Tensor> sd, string source, Device? device)
    {
        var model = new GPT(cfg, new Generator(0), device);
        model.LoadStateDict(sd, strict: true, source: source);
        model.Eval();
        return model;
    }
}
