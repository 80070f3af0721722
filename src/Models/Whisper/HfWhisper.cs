using System.Text.Json;
using ManagedTensor.Models.Formats;

namespace ManagedTensor.Models.Whisper;

/// <summary>
/// Hugging Face WhisperForConditionalGeneration checkpoints: config.json (d_model, encoder_layers, encoder_attention_heads,
/// encoder_ffn_dim, the decoder's three, num_mel_bins, max_source_positions, max_target_positions, vocab_size,
/// activation_function "gelu") and model.safetensors (or shards) with the names <see cref="WhisperModel"/> carries:
///   model.encoder.conv1.weight (d, n_mels, 3), conv2.weight (d, d, 3), embed_positions.weight (max_source_positions, d),
///   model.encoder.layers.N.{self_attn_layer_norm, self_attn.{q,k,v,out}_proj, final_layer_norm, fc1, fc2}, layer_norm,
///   model.decoder.embed_tokens.weight (vocab, d), embed_positions.weight (max_target_positions, d),
///   model.decoder.layers.N.{..., encoder_attn_layer_norm, encoder_attn.{q,k,v,out}_proj, ...}, layer_norm,
///   proj_out.weight (optional: the same matrix as embed_tokens, tied).
/// Weights are read as float32 (F16 and BF16 files are widened). Every shape is checked against config.json and
/// every tensor must be used: anything left over means another architecture, and the error says so.
/// </summary>
public static class HfWhisper
{
    public const string Architecture = "WhisperForConditionalGeneration";

    private const int MaxDim = 1 << 14, MaxLayers = 256, MaxPositions = 1 << 16, MaxVocab = 1 << 20;

    /// <summary>Whether config.json describes a Whisper model (architectures or model_type).</summary>
    public static bool IsWhisper(HfJson cfg) =>
        Architectures(cfg).Contains(Architecture) || cfg.GetString("model_type") == "whisper";

    private static string[] Architectures(HfJson cfg) =>
        cfg.Get("architectures") is { ValueKind: JsonValueKind.Array } a ? a.EnumerateArray().Select(e => e.ToString()).ToArray() : [];

    /// <summary>The model's shape from config.json, validated; another architecture is refused by name.</summary>
    public static WhisperConfig ReadConfig(HfJson cfg)
    {
        if (!IsWhisper(cfg))
            throw cfg.Error($"architectures [{string.Join(", ", Architectures(cfg))}], model_type '{cfg.GetString("model_type")}': not a Whisper checkpoint (expected {Architecture}, model_type whisper)");
        if (cfg.GetString("activation_function") is { } act && act != "gelu")
            throw cfg.Error($"'activation_function' is '{act}'; Whisper's layers use 'gelu'");
        if (cfg.GetBool("scale_embedding", false)) throw cfg.Error("'scale_embedding' is true; Whisper does not scale its token embedding");
        var c = new WhisperConfig(
            NMels: Range(cfg, "num_mel_bins", MaxDim),
            DModel: Range(cfg, "d_model", MaxDim),
            EncoderLayers: Range(cfg, "encoder_layers", MaxLayers),
            EncoderHeads: Range(cfg, "encoder_attention_heads", MaxDim),
            EncoderFfn: Range(cfg, "encoder_ffn_dim", 4 * MaxDim),
            DecoderLayers: Range(cfg, "decoder_layers", MaxLayers),
            DecoderHeads: Range(cfg, "decoder_attention_heads", MaxDim),
            DecoderFfn: Range(cfg, "decoder_ffn_dim", 4 * MaxDim),
            MaxSourcePositions: Range(cfg, "max_source_positions", MaxPositions),
            MaxTargetPositions: Range(cfg, "max_target_positions", MaxPositions),
            VocabSize: Range(cfg, "vocab_size", MaxVocab));
        try { c.Validate(); }
        catch (ArgumentException e) { throw cfg.Error(e.Message); }
        return c;
    }

    private static int Range(HfJson cfg, string key, int max)
    {
        int v = cfg.GetInt(key);
        return v >= 1 && v <= max ? v : throw cfg.Error($"'{key}' is {v}, expected a value in [1, {max}]");
    }

    /// <summary>Reads and checks every weight into a <see cref="WhisperModel"/> on <paramref name="device"/>.</summary>
    public static WhisperModel LoadModel(HfCheckpoint ck, Device? device = null)
    {
        var c = ReadConfig(ck.Config);
        var model = new WhisperModel(c, new Generator(0), device);
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, t) in model.StateDict())
            weights[name] = ck.F32(name, t.Shape, Meaning(name));
        if (ck.Has("proj_out.weight")) ck.Skip("proj_out.weight"); // tied to model.decoder.embed_tokens.weight
        var unused = ck.Unread.Order(StringComparer.Ordinal).ToList();
        if (unused.Count > 0)
            throw new InvalidModelFileException(ck.WeightsPath, $"{unused.Count} tensors are not part of {Architecture} with {c.EncoderLayers} + {c.DecoderLayers} layers: " +
                string.Join(", ", unused.Take(5)) + (unused.Count > 5 ? ", ..." : "") + " (another architecture, or a config.json that does not match the weights)");
        model.LoadStateDict(weights, source: ck.WeightsPath);
        model.Eval();
        return model;
    }

    /// <summary>What a weight is, for error messages.</summary>
    private static string Meaning(string name) => name switch
    {
        "model.encoder.conv1.weight" => "(d_model, num_mel_bins, 3)",
        "model.encoder.conv2.weight" => "(d_model, d_model, 3)",
        "model.encoder.embed_positions.weight" => "(max_source_positions, d_model)",
        "model.decoder.embed_positions.weight" => "(max_target_positions, d_model)",
        "model.decoder.embed_tokens.weight" => "(vocab_size, d_model)",
        _ when name.EndsWith("fc1.weight", StringComparison.Ordinal) => "(ffn_dim, d_model)",
        _ when name.EndsWith("fc2.weight", StringComparison.Ordinal) => "(d_model, ffn_dim)",
        _ when name.EndsWith("fc1.bias", StringComparison.Ordinal) => "(ffn_dim)",
        _ when name.EndsWith("_proj.weight", StringComparison.Ordinal) => "(d_model, d_model)",
        _ => "(d_model)",
    };
}
