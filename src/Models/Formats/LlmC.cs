using System.Text;

namespace ManagedTensor.Models.Formats;

/// <summary>GPT-2 shape as stored in an llm.c checkpoint header. PaddedVocabSize rounds VocabSize up (50257 -> 50304) for faster kernels.</summary>
public sealed record Gpt2Shape(int MaxSeqLen, int VocabSize, int PaddedVocabSize, int NLayers, int NHeads, int Channels);

/// <summary>
/// Andrej Karpathy's llm.c files.
/// Model (gpt2_124M.bin): 256 int32 header [magic 20240326, version (3: float32, 5: bfloat16), max_seq_len, vocab_size,
/// num_layers, num_heads, channels, padded_vocab_size, 0...], then the parameters back to back in this order
/// (llm.c's fill_in_parameter_sizes), Linear weights already (out, in):
///   wte (Vp, C), wpe (maxT, C), ln1w (L, C), ln1b (L, C), qkvw (L, 3C, C), qkvb (L, 3C), attprojw (L, C, C), attprojb (L, C),
///   ln2w (L, C), ln2b (L, C), fcw (L, 4C, C), fcb (L, 4C), fcprojw (L, C, 4C), fcprojb (L, C), lnfw (C), lnfb (C).
/// Tokenizer (gpt2_tokenizer.bin): 256 int32 header [magic 20240328, version (1, or 2 with eot_token at [3]), vocab_size, eot],
/// then per token uint8 length and that many bytes.
/// Parameters are returned under nanoGPT's names (transformer.wte.weight, transformer.h.0.attn.c_attn.weight, ..., lm_head.weight tied to wte).
/// </summary>
public static class LlmC
{
    public const int ModelMagic = 20240326, TokenizerMagic = 20240328, HeaderInts = 256;

    public static Gpt2Shape ReadHeader(ModelFile f, out int version)
    {
        if (f.Length < HeaderInts * 4) throw f.Error($"header: {f.Length} bytes, an llm.c header needs {HeaderInts * 4}");
        f.Seek(0, "header");
        int magic = f.ReadI32("magic");
        if (magic != ModelMagic) throw f.Error($"magic = {magic}, expected {ModelMagic}: not an llm.c GPT-2 model file");
        version = f.ReadI32("version");
        if (version is not (3 or 5)) throw f.Error($"version = {version}; supported: 3 (float32), 5 (bfloat16)");
        int maxT = f.ReadI32("max_seq_len"), v = f.ReadI32("vocab_size"), L = f.ReadI32("num_layers"), nh = f.ReadI32("num_heads");
        int c = f.ReadI32("channels"), vp = f.ReadI32("padded_vocab_size");
        Check(f, "max_seq_len", maxT, 1 << 20); Check(f, "vocab_size", v, 1 << 22); Check(f, "num_layers", L, 1024);
        Check(f, "num_heads", nh, 1024); Check(f, "channels", c, 1 << 16); Check(f, "padded_vocab_size", vp, 1 << 22);
        if (c % nh != 0) throw f.Error($"channels {c} is not divisible by num_heads {nh}");
        if (vp < v) throw f.Error($"padded_vocab_size {vp} is smaller than vocab_size {v}");
        var shape = new Gpt2Shape(maxT, v, vp, L, nh, c);
        long expected = HeaderInts * 4L + ParameterCount(shape) * (version == 3 ? 4 : 2);
        if (f.Length != expected) throw f.Error($"file size {f.Length} bytes does not match the {expected} implied by the header {shape} (version {version})");
        f.Seek(HeaderInts * 4, "parameters");
        return shape;
    }

    private static void Check(ModelFile f, string field, int value, int max)
    {
        if (value < 1 || value > max) throw f.Error($"header field {field} = {value} is outside [1, {max}]");
    }

    /// <summary>Each parameter's nanoGPT-style name prefix role and shape, in file order (per layer tensors stacked over L).</summary>
    private static (string Name, int[] Shape)[] Layout(Gpt2Shape s)
    {
        int C = s.Channels, L = s.NLayers;
        return
        [
            ("wte", [s.PaddedVocabSize, C]), ("wpe", [s.MaxSeqLen, C]),
            ("ln_1.weight", [L, C]), ("ln_1.bias", [L, C]), ("attn.c_attn.weight", [L, 3 * C, C]), ("attn.c_attn.bias", [L, 3 * C]),
            ("attn.c_proj.weight", [L, C, C]), ("attn.c_proj.bias", [L, C]), ("ln_2.weight", [L, C]), ("ln_2.bias", [L, C]),
            ("mlp.c_fc.weight", [L, 4 * C, C]), ("mlp.c_fc.bias", [L, 4 * C]), ("mlp.c_proj.weight", [L, C, 4 * C]), ("mlp.c_proj.bias", [L, C]),
            ("ln_f.weight", [C]), ("ln_f.bias", [C]),
        ];
    }

    public static long ParameterCount(Gpt2Shape s) => Layout(s).Sum(p => p.Shape.Aggregate(1L, (a, b) => a * b));

    /// <summary>
    /// Loads an llm.c GPT-2 checkpoint as float32 tensors under nanoGPT names. The embedding keeps its padded rows
    /// (Vp, C) like nanoGPT's vocab 50304; rows past VocabSize are zeros in llm.c files.
    /// </summary>
    public static (Gpt2Shape Shape, Dictionary<string, Tensor> Parameters) LoadGpt2(string path)
    {
        using var f = new ModelFile(path);
        var s = ReadHeader(f, out int version);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, shape) in Layout(s))
        {
            long n = shape.Aggregate(1L, (a, b) => a * b);
            float[] values;
            if (version == 3) values = f.ReadF32Array(n, name);
            else
            {
                values = new float[n];
                GgmlTypes.Dequantize(GgmlType.BF16, f.ReadBytes(2 * n, name), values);
            }
            if (name is "wte" or "wpe") result[$"transformer.{name}.weight"] = Tensor.FromArray(values, shape);
            else if (name.StartsWith("ln_f", StringComparison.Ordinal)) result[$"transformer.{name}"] = Tensor.FromArray(values, shape);
            else
            {
                int per = (int)(n / s.NLayers);
                for (int l = 0; l < s.NLayers; l++)
                    result[$"transformer.h.{l}.{name}"] = Tensor.FromArray(values.AsSpan(l * per, per).ToArray(), shape[1..]);
            }
        }
        result["lm_head.weight"] = result["transformer.wte.weight"]; // tied
        return (s, result);
    }

    /// <summary>Reads gpt2_tokenizer.bin: the byte string of every token and the end-of-text id.</summary>
    public static Gpt2TokenTable LoadTokenizer(string path)
    {
        using var f = new ModelFile(path);
        if (f.Length < HeaderInts * 4) throw f.Error($"header: {f.Length} bytes, an llm.c tokenizer header needs {HeaderInts * 4}");
        int magic = f.ReadI32("magic");
        if (magic != TokenizerMagic) throw f.Error($"magic = {magic}, expected {TokenizerMagic}: not an llm.c tokenizer file");
        int version = f.ReadI32("version");
        if (version is not (1 or 2)) throw f.Error($"version = {version}; supported: 1, 2");
        int n = f.ReadI32("vocab_size");
        // each token takes at least its length byte
        if (n < 1 || n > f.Length - HeaderInts * 4) throw f.Error($"vocab_size = {n} is outside [1, {f.Length - HeaderInts * 4}] (bytes after the header)");
        int eot = version == 2 ? f.ReadI32("eot_token") : 50256;
        if ((uint)eot >= (uint)n) throw f.Error($"eot_token = {eot} outside the {n}-token vocabulary");
        f.Seek(HeaderInts * 4, "tokens");
        var tokens = new byte[n][];
        for (int i = 0; i < n; i++)
        {
            int len = f.Read<byte>($"token {i} length");
            if (len == 0) throw f.Error($"token {i} has length 0");
            tokens[i] = f.ReadBytes(len, $"token {i} bytes").ToArray();
        }
        if (f.Remaining != 0) throw f.Error($"{f.Remaining} bytes follow the last of {n} tokens");
        return new Gpt2TokenTable(tokens, eot);
    }
}

/// <summary>GPT-2's tokens as raw bytes (what llm.c uses to print samples). Decoding concatenates bytes, then reads UTF-8.</summary>
public sealed record Gpt2TokenTable(byte[][] Tokens, int EndOfText)
{
    public string Decode(IEnumerable<int> ids) => Encoding.UTF8.GetString(ids.SelectMany(i => Tokens[i]).ToArray());
}

/// <summary>
/// Hugging Face GPT-2 checkpoints (model.safetensors) to nanoGPT names. HF uses Conv1D layers whose weight is (in, out);
/// nn.Linear and llm.c use (out, in), so c_attn, c_proj and c_fc weights are transposed. Attention-mask buffers are dropped.
/// </summary>
public static class Gpt2HfMapping
{
    private static readonly string[] Conv1D = ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"];

    public static Dictionary<string, Tensor> ToNanoGpt(IReadOnlyDictionary<string, Tensor> hf)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, t) in hf)
        {
            string name = key.StartsWith("transformer.", StringComparison.Ordinal) ? key["transformer.".Length..] : key;
            if (name.EndsWith(".attn.bias", StringComparison.Ordinal) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal)) continue;
            if (name == "lm_head.weight") continue; // tied to wte below
            result["transformer." + name] = Conv1D.Any(name.EndsWith) ? Transpose2D(t) : t;
        }
        if (!result.TryGetValue("transformer.wte.weight", out var wte)) throw new ArgumentException("GPT-2 checkpoint has no wte.weight");
        result["lm_head.weight"] = wte;
        return result;
    }

    /// <summary>A contiguous (cols, rows) copy of a (rows, cols) float32 tensor.</summary>
    public static Tensor Transpose2D(Tensor t)
    {
        if (t.Rank != 2) throw new ArgumentException($"Conv1D weight must be 2-D, got {t.Describe()}");
        int r = t.Shape[0], c = t.Shape[1];
        var src = t.ToArray<float>();
        var dst = new float[src.Length];
        for (int i = 0; i < r; i++)
            for (int j = 0; j < c; j++) dst[j * r + i] = src[i * c + j];
        return Tensor.FromArray(dst, [c, r]);
    }
}
