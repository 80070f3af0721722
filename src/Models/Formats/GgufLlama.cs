using ManagedTensor.Models.Tokenizers;
using ManagedTensor.Nn;

namespace ManagedTensor.Models.Formats;

/// <summary>
/// Llama models in GGUF, with llama.cpp's key and tensor names:
///   llama.context_length, embedding_length, feed_forward_length, block_count, attention.head_count(_kv),
///   attention.layer_norm_rms_epsilon, rope.freq_base; tokenizer.ggml.tokens / scores / bos_token_id / eos_token_id
///   token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate (w1), ffn_down (w2), ffn_up (w3)},
///   output_norm, output (absent: tied to token_embd).
/// RoPE: llama.cpp's converter permutes Hugging Face's half-split Q/K rows into the interleaved layout
/// (see <see cref="Llama.PermuteRopeRows"/>), so GGUF Q/K weights are used with <see cref="RopeLayout.Interleaved"/> as stored;
/// loading them into a half-split model would need the inverse permutation, applied explicitly by PermuteRopeRows.
/// llama2.c checkpoints are interleaved too, so converting one to GGUF copies Q/K rows unchanged.
/// Sentencepiece's U+2581 word marker is mapped to ' ' on load and back on save (llama2.c's convention).
/// </summary>
public static class GgufLlama
{
    private const char SpaceMarker = '\u2581';

    /// <summary>llama.cpp's tensor names for the model's (Hugging Face's) names: "blk.N." for "model.layers.N." and per-weight names below.</summary>
    private static readonly (string Hf, string Gguf)[] LayerNames =
    [
        ("input_layernorm.weight", "attn_norm.weight"),
        ("self_attn.q_proj.weight", "attn_q.weight"), ("self_attn.k_proj.weight", "attn_k.weight"),
        ("self_attn.v_proj.weight", "attn_v.weight"), ("self_attn.o_proj.weight", "attn_output.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"), ("mlp.up_proj.weight", "ffn_up.weight"), ("mlp.down_proj.weight", "ffn_down.weight"),
    ];

    /// <summary>The GGUF name of a model weight (model.layers.3.mlp.gate_proj.weight -> blk.3.ffn_gate.weight).</summary>
    public static string GgufName(string hfName)
    {
        switch (hfName)
        {
            case "model.embed_tokens.weight": return "token_embd.weight";
            case "model.norm.weight": return "output_norm.weight";
            case "lm_head.weight": return "output.weight";
        }
        const string layers = "model.layers.";
        if (hfName.StartsWith(layers, StringComparison.Ordinal))
        {
            int dot = hfName.IndexOf('.', layers.Length);
            string rest = hfName[(dot + 1)..];
            foreach (var (hf, gguf) in LayerNames)
                if (rest == hf) return $"blk.{hfName[layers.Length..dot]}.{gguf}";
        }
        throw new ArgumentException($"'{hfName}' is not a Llama weight name");
    }

    public static LlamaConfig ReadConfig(GgufFile g)
    {
        string arch = g.GetString("general.architecture");
        if (arch != "llama") throw new InvalidModelFileException(g.Path, $"general.architecture = '{arch}', only 'llama' is supported");
        int dim = g.GetInt("llama.embedding_length"), heads = g.GetInt("llama.attention.head_count");
        var emb = g.Tensor("token_embd.weight");
        int vocab = g.GetInt("llama.vocab_size", emb.Dims.Length == 2 ? (int)emb.Dims[1] : 0);
        var c = new LlamaConfig(dim, g.GetInt("llama.feed_forward_length"), g.GetInt("llama.block_count"), heads,
            g.GetInt("llama.attention.head_count_kv", heads), vocab, g.GetInt("llama.context_length"),
            g.GetFloat("llama.attention.layer_norm_rms_epsilon", 1e-5f), g.GetFloat("llama.rope.freq_base", 10000f), RopeLayout.Interleaved);
        try { c.Validate(); }
        catch (ArgumentException e) { throw new InvalidModelFileException(g.Path, $"llama hyperparameters: {e.Message}"); }
        if (c.SeqLen > 1 << 20) throw new InvalidModelFileException(g.Path, $"llama.context_length = {c.SeqLen} is above 2^20");
        return c;
    }

    /// <summary>
    /// The model, every weight in its stored format (F32, F16, BF16 as those dtypes; Q8_0, Q4_0, Q4_K, ... as block-format
    /// tensors, never expanded), on <paramref name="device"/>. ggml's ne = [cols, rows] is the (rows, cols) matrix. Tensors
    /// the model does not use (rope_freqs.weight, say) are left in the file.
    /// </summary>
    public static Llama LoadModel(GgufFile g, Device? device = null, DType? floatWeights = null)
    {
        var c = ReadConfig(g);
        bool tied = !g.HasTensor("output.weight");
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, shape) in c.WeightShapes(tied))
        {
            string gname = GgufName(name);
            var t = g.Tensor(gname);
            long[] ne = shape.Reverse().Select(x => (long)x).ToArray();
            if (!t.Dims.SequenceEqual(ne))
                throw new InvalidModelFileException(g.Path, $"tensor '{gname}' has ne = [{string.Join(", ", t.Dims)}], expected [{string.Join(", ", ne)}]");
            DType dtype;
            try { dtype = GgmlTypes.ToDType(t.Type); }
            catch (NotSupportedException e) { throw new InvalidModelFileException(g.Path, $"tensor '{gname}': {e.Message}"); }
            weights[name] = IO.TensorBytes.ToTensor(g.TensorBytes(t), shape, dtype, gname);
        }
        return new Llama(c, weights, device, floatWeights, g.Path);
    }

    /// <summary>Token types in tokenizer.ggml.token_type (llama.cpp's llama_token_type).</summary>
    private const int TokenTypeNormal = 1, TokenTypeUnknown = 2, TokenTypeControl = 3, TokenTypeUserDefined = 4, TokenTypeByte = 6;

    /// <summary>
    /// The sentencepiece-style vocabulary (tokenizer.ggml.model "llama"): tokens, scores, BOS/EOS, add_bos_token, and the
    /// control tokens (token_type 3, and user-defined 4) that chat templates write as text. GPT-2-style BPE vocabularies
    /// ("gpt2": Llama 3, Qwen GGUFs) are refused with a clear message: they need merges and a pre-tokenizer not read here.
    /// </summary>
    public static LlamaTokenizer LoadTokenizer(GgufFile g)
    {
        string model = g.Has("tokenizer.ggml.model") ? g.GetString("tokenizer.ggml.model") : "llama";
        if (model != "llama")
            throw new InvalidModelFileException(g.Path, $"tokenizer.ggml.model = '{model}'; only sentencepiece-style 'llama' vocabularies are read from GGUF (use the Hugging Face checkpoint's tokenizer.json for BPE models)");
        var tokens = g.GetArray<string>("tokenizer.ggml.tokens");
        var scores = g.Has("tokenizer.ggml.scores") ? g.GetArray<float>("tokenizer.ggml.scores") : new float[tokens.Length];
        if (scores.Length != tokens.Length) throw new InvalidModelFileException(g.Path, $"tokenizer.ggml.scores has {scores.Length} entries, tokenizer.ggml.tokens {tokens.Length}");
        int bos = g.GetInt("tokenizer.ggml.bos_token_id", 1), eos = g.GetInt("tokenizer.ggml.eos_token_id", 2);
        if ((uint)bos >= tokens.Length || (uint)eos >= tokens.Length)
            throw new InvalidModelFileException(g.Path, $"bos_token_id {bos} / eos_token_id {eos} outside the {tokens.Length}-token vocabulary");
        var specials = new List<int>();
        if (g.Has("tokenizer.ggml.token_type"))
        {
            var types = g.GetArray<int>("tokenizer.ggml.token_type");
            if (types.Length != tokens.Length) throw new InvalidModelFileException(g.Path, $"tokenizer.ggml.token_type has {types.Length} entries, tokenizer.ggml.tokens {tokens.Length}");
            for (int i = 0; i < types.Length; i++)
                if (types[i] is TokenTypeControl or TokenTypeUserDefined) specials.Add(i);
        }
        bool addBos = !g.Has("tokenizer.ggml.add_bos_token") || g.Metadata["tokenizer.ggml.add_bos_token"] is true;
        return new LlamaTokenizer(tokens.Select(t => t.Replace(SpaceMarker, ' ')).ToArray(), scores, bos, eos, specials, addBos) { Kind = "gguf" };
    }

    /// <summary>
    /// llama.cpp's type of each token: byte-fallback tokens &lt;0xNN&gt; BYTE, &lt;unk&gt; UNKNOWN, BOS, EOS and the
    /// tokenizer's other special tokens CONTROL, the rest NORMAL. llama.cpp prints a BYTE token as its byte (a newline,
    /// not "&lt;0x0A&gt;"), and never prints CONTROL ones.
    /// </summary>
    public static int[] TokenTypes(LlamaTokenizer tok) => Enumerable.Range(0, tok.VocabSize).Select(i =>
    {
        string t = tok.Vocab[i];
        if (i == tok.Bos || i == tok.Eos || (tok.Specials.TryGetValue(t, out int id) && id == i)) return TokenTypeControl;
        if (t == "<unk>") return TokenTypeUnknown;
        if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>' && Uri.IsHexDigit(t[3]) && Uri.IsHexDigit(t[4])) return TokenTypeByte;
        return TokenTypeNormal;
    }).ToArray();

    /// <summary>
    /// Writes <paramref name="model"/> and <paramref name="tok"/> as GGUF, with 2-D weights encoded as <paramref name="recipe"/>
    /// says (a plain type, or llama.cpp's Q4_K_M mix; rows that are not whole blocks fall back as llama.cpp's; norm weights
    /// stay F32). Q/K rows are written in the interleaved layout the GGUF convention expects. Token types are llama.cpp's (<see cref="TokenTypes"/>);
    /// <paramref name="extra"/> adds metadata (e.g. tokenizer.chat_template).
    /// </summary>
    public static void Save(Llama model, LlamaTokenizer tok, string path, QuantRecipe recipe, IEnumerable<KeyValuePair<string, object>>? extra = null)
    {
        var c = model.Config;
        var types = TokenTypes(tok);
        var w = new GgufWriter();
        w.Add("general.architecture", "llama").Add("general.name", Path.GetFileNameWithoutExtension(path))
         .Add("llama.context_length", (uint)c.SeqLen).Add("llama.embedding_length", (uint)c.Dim)
         .Add("llama.feed_forward_length", (uint)c.HiddenDim).Add("llama.block_count", (uint)c.NLayers)
         .Add("llama.attention.head_count", (uint)c.NHeads).Add("llama.attention.head_count_kv", (uint)c.NKvHeads)
         .Add("llama.rope.dimension_count", (uint)c.HeadSize).Add("llama.attention.layer_norm_rms_epsilon", c.NormEps)
         .Add("llama.rope.freq_base", c.RopeTheta).Add("llama.vocab_size", (uint)c.VocabSize)
         .Add("tokenizer.ggml.model", "llama")
         .Add("tokenizer.ggml.tokens", new GgufArray(GgufValueType.String, tok.Vocab.Select(t => t.Replace(' ', SpaceMarker)).ToArray()))
         .Add("tokenizer.ggml.scores", new GgufArray(GgufValueType.Float32, tok.Scores))
         .Add("tokenizer.ggml.token_type", new GgufArray(GgufValueType.Int32, types))
         .Add("tokenizer.ggml.bos_token_id", (uint)tok.Bos).Add("tokenizer.ggml.eos_token_id", (uint)tok.Eos);
        int unk = Array.IndexOf(types, TokenTypeUnknown);
        if (unk >= 0) w.Add("tokenizer.ggml.unknown_token_id", (uint)unk);
        foreach (var (key, value) in extra ?? []) w.Add(key, value);

        var state = model.StateDict();
        foreach (var (name, shape) in c.WeightShapes(model.TiedHead))
        {
            using var noGrad = GradMode.NoGrad();
            var t = state[name].To(Device.Cpu).To(DType.F32);                      // block formats decoded
            if (name.EndsWith("q_proj.weight", StringComparison.Ordinal)) t = Llama.PermuteRopeRows(t, c.NHeads, c.Rope, RopeLayout.Interleaved);
            if (name.EndsWith("k_proj.weight", StringComparison.Ordinal)) t = Llama.PermuteRopeRows(t, c.NKvHeads, c.Rope, RopeLayout.Interleaved);
            string gguf = GgufName(name);
            var stored = shape.Length == 2 ? recipe.TypeFor(gguf, shape[1], c.NLayers, model.TiedHead) : GgmlType.F32;
            w.AddTensor(gguf, shape.Reverse().Select(x => (long)x).ToArray(), stored, t.Contiguous().ToArray<float>());
        }
        w.Write(path);
    }
}

/// <summary>Entry point for `mt quantize`: a llama2.c checkpoint or GGUF model rewritten as GGUF of the chosen type.</summary>
public static class Quantize
{
    /// <summary>Converts <paramref name="input"/> (.bin + tokenizer, or .gguf) to <paramref name="output"/> with weights as <paramref name="recipe"/> says.</summary>
    public static void Run(string input, string? tokenizerPath, string output, QuantRecipe recipe, TextWriter log)
    {
        var (model, tok) = Generation.ModelLoader.OpenLlama(input, tokenizerPath);
        GgufLlama.Save(model, tok, output, recipe);
        log.WriteLine($"{input} -> {output}: {recipe.Name}, {IO.FileLength.Of(input):N0} -> {IO.FileLength.Of(output):N0} bytes");
    }
}
