using ManagedTensor.Quant;

namespace ManagedTensor.Models.Formats;

/// <summary>
/// Which ggml type each weight of a model is written in: what `mt quantize --type` chooses. A plain type (F32, F16,
/// BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, TQ2_0) applies to every 2-D weight whose rows fill whole blocks;
/// a row that does not falls back as llama.cpp's llama_tensor_get_type does (Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to
/// Q8_0, and F32 where even 32 does not divide the row). Q4_K_M is llama.cpp's mix: Q4_K, with Q6_K for the output
/// matrix (the token embedding when they are tied) and for attn_v and ffn_down in the layers use_more_bits picks
/// (the first and last eighth and every third one between). Norm weights and other 1-D tensors stay F32.
/// </summary>
public sealed record QuantRecipe(string Name, GgmlType Base, bool MixedKm = false)
{
    /// <summary>Every name `--type` accepts, in the order `--help` lists them.</summary>
    public static readonly string[] Names = ["F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_K_M", "Q4_0", "TQ2_0"];

    public static QuantRecipe Parse(string name)
    {
        string n = name.Trim().ToUpperInvariant();
        if (n == "Q4_K_M") return new("Q4_K_M", GgmlType.Q4_K, MixedKm: true);
        if (Names.Contains(n) && Enum.TryParse<GgmlType>(n, out var t)) return new(n, t);
        throw new ArgumentException($"--type {name}: not a type `mt quantize` writes (it writes {string.Join(", ", Names)})");
    }

    public static implicit operator QuantRecipe(GgmlType t) => new(t.ToString(), t);

    /// <summary>
    /// The type of 2-D weight <paramref name="name"/> (llama.cpp's tensor names) with rows of <paramref name="cols"/>
    /// values, in a model of <paramref name="layers"/> layers whose output matrix is tied to the embedding when
    /// <paramref name="tiedOutput"/>.
    /// </summary>
    public GgmlType TypeFor(string name, int cols, int layers, bool tiedOutput)
    {
        var t = Base;
        if (MixedKm)
        {
            bool output = name == "output.weight" || (tiedOutput && name == "token_embd.weight");
            if (output) t = GgmlType.Q6_K;
            else if ((name.EndsWith(".attn_v.weight") || name.EndsWith(".ffn_down.weight")) && Layer(name) is int l && UseMoreBits(l, layers))
                t = GgmlType.Q6_K;
        }
        return Compatible(t, cols);
    }

    /// <summary>llama.cpp's use_more_bits: the first and last eighth of the layers and every third layer between.</summary>
    public static bool UseMoreBits(int layer, int layers) => layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    private static int? Layer(string name)
    {
        var parts = name.Split('.');
        return parts.Length > 2 && parts[0] == "blk" && int.TryParse(parts[1], out int l) ? l : null;
    }

    /// <summary>llama.cpp's fallback for rows that do not fill the type's blocks (its convert_incompatible_tensor), then F32.</summary>
    public static GgmlType Compatible(GgmlType t, int cols)
    {
        int block = GgmlTypes.Layout(t).BlockSize;
        if (cols % block == 0) return t;
        var fallback = t switch
        {
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            GgmlType.TQ2_0 => GgmlType.Q4_0,
            _ => GgmlType.F32,
        };
        return cols % GgmlTypes.Layout(fallback).BlockSize == 0 ? fallback : GgmlType.F32;
    }

    /// <summary>The types it writes, as "F32, F16, ..." for help text.</summary>
    public static string HelpList => string.Join(", ", Names);
}
