using ManagedTensor.Models.Tokenizers;

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

    public static Llama LoadModel(GgufFile g)
    {
        var c = ReadConfig(g);
        var emb = g.Matrix("token_embd.weight", c.VocabSize, c.Dim);
        var layers = new LlamaLayer[c.NLayers];
        for (int l = 0; l < c.NLayers; l++)
        {
            string p = $"blk.{l}.";
            layers[l] = new LlamaLayer(
                g.Vector(p + "attn_norm.weight", c.Dim),
                g.Matrix(p + "attn_q.weight", c.Dim, c.Dim), g.Matrix(p + "attn_k.weight", c.KvDim, c.Dim),
                g.Matrix(p + "attn_v.weight", c.KvDim, c.Dim), g.Matrix(p + "attn_output.weight", c.Dim, c.Dim),
                g.Vector(p + "ffn_norm.weight", c.Dim),
                g.Matrix(p + "ffn_gate.weight", c.HiddenDim, c.Dim), g.Matrix(p + "ffn_down.weight", c.Dim, c.HiddenDim),
                g.Matrix(p + "ffn_up.weight", c.HiddenDim, c.Dim));
        }
        var cls = g.HasTensor("output.weight") ? g.Matrix("output.weight", c.VocabSize, c.Dim) : emb;
        return new Llama(c, new LlamaWeights(emb, layers, g.Vector("output_norm.weight", c.Dim), cls));
    }

    /// <summary>Token types in tokenizer.ggml.token_type (llama.cpp's llama_token_type): control and user-defined tokens are matched whole in prompts.</summary>
    private const int TokenTypeControl = 3, TokenTypeUserDefined = 4;

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
        return new LlamaTokenizer(tokens.Select(t => t.Replace(SpaceMarker, ' ')).ToArray(), scores, bos, eos, specials, addBos);
    }

    /// <summary>
    /// Writes <paramref name="model"/> and <paramref name="tok"/> as GGUF, with 2-D weights encoded as <paramref name="recipe"/>
    /// says (a plain type, or llama.cpp's Q4_K_M mix; norm weights stay F32). Q/K rows are written in the interleaved layout the GGUF convention expects. Special tokens
    /// are marked control in tokenizer.ggml.token_type; <paramref name="extra"/> adds metadata (e.g. tokenizer.chat_template).
    /// </summary>
    public static void Save(Llama model, LlamaTokenizer tok, string path, QuantRecipe recipe, IEnumerable<KeyValuePair<string, object>>? extra = null)
    {
        var c = model.Config;
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
         .Add("tokenizer.ggml.bos_token_id", (uint)tok.Bos).Add("tokenizer.ggml.eos_token_id", (uint)tok.Eos)
         .Add("tokenizer.ggml.token_type", new GgufArray(GgufValueType.Int32, Enumerable.Range(0, tok.VocabSize)
             .Select(i => tok.Specials.ContainsKey(tok.Vocab[i]) && tok.Specials[tok.Vocab[i]] == i ? TokenTypeControl : 1).ToArray()));
        foreach (var (key, value) in extra ?? []) w.Add(key, value);

        void Mat(string name, WeightMatrix m, bool rope = false, int heads = 0)
        {
            var f = m.ToF32();
            if (rope) f = Llama.PermuteRopeRows(f, heads, c.HeadSize, m.Cols, c.Rope, RopeLayout.Interleaved);
            w.AddTensor(name, [m.Cols, m.Rows], recipe.TypeFor(name, m.Cols, c.NLayers, model.Weights.SharedClassifier), f);
        }
        void Vec(string name, float[] v) => w.AddTensor(name, [v.Length], GgmlType.F32, v);

        Mat("token_embd.weight", model.Weights.TokenEmbedding);
        for (int l = 0; l < c.NLayers; l++)
        {
            var L = model.Weights.Layers[l];
            string p = $"blk.{l}.";
            Vec(p + "attn_norm.weight", L.AttnNorm);
            Mat(p + "attn_q.weight", L.Wq, rope: true, heads: c.NHeads); Mat(p + "attn_k.weight", L.Wk, rope: true, heads: c.NKvHeads);
            Mat(p + "attn_v.weight", L.Wv); Mat(p + "attn_output.weight", L.Wo);
            Vec(p + "ffn_norm.weight", L.FfnNorm);
            Mat(p + "ffn_gate.weight", L.W1); Mat(p + "ffn_down.weight", L.W2); Mat(p + "ffn_up.weight", L.W3);
        }
        Vec("output_norm.weight", model.Weights.FinalNorm);
        if (!model.Weights.SharedClassifier) Mat("output.weight", model.Weights.Classifier);
        w.Write(path);
    }
}

/// <summary>Entry point for `mt quantize`: a llama2.c checkpoint or GGUF model rewritten as GGUF of the chosen type.</summary>
public static class Quantize
{
    /// <summary>Converts <paramref name="input"/> (.bin + tokenizer, or .gguf) to <paramref name="output"/> with weights as <paramref name="recipe"/> says.</summary>
    public static void Run(string input, string? tokenizerPath, string output, QuantRecipe recipe, TextWriter log)
    {
        var (model, tok) = Generation.LlamaGenerate.Load(input, tokenizerPath);
        GgufLlama.Save(model, tok, output, recipe);
        log.WriteLine($"{input} -> {output}: {recipe.Name}, {IO.FileLength.Of(input):N0} -> {IO.FileLength.Of(output):N0} bytes");
    }
}
