using System.Text.Json;

namespace ManagedTensor.Models.Planning;

/// <summary>The two block layouts the planner knows: nanoGPT's (LayerNorm, c_attn, GELU MLP) and Llama's (RMSNorm, GQA + RoPE, SwiGLU).</summary>
public enum ModelFamily
{
    Gpt,
    Llama,
}

/// <summary>What a weight tensor is, which decides its format in a recipe (block matrices may be quantized; embeddings and the head stay float, as bitsandbytes leaves them).</summary>
public enum WeightKind
{
    Matrix,
    Embedding,
    Head,
    Vector,
}

/// <summary>One weight tensor of a model: (rows, cols), or (rows) for a vector (cols = 1).</summary>
public readonly record struct WeightTensor(string Name, long Rows, long Cols, WeightKind Kind)
{
    public long Elements => Rows * Cols;
}

/// <summary>
/// The shape of a model, all `mt plan` needs to know of it: width, MLP width, layers, heads, KV heads (GQA), vocabulary,
/// context, whether the head is tied to the embedding, and biases (GPT-2 has them, Llama not). Named shapes are the
/// published configs; any Hugging Face config.json (Llama/Mistral or GPT-2 keys) gives one too.
/// </summary>
public sealed record ModelShape(string Name, ModelFamily Family, int Dim, int Hidden, int Layers, int Heads, int KvHeads, int Vocab, int Context,
    bool TiedHead, bool Bias)
{
    public int HeadSize => Dim / Heads;
    public int KvDim => HeadSize * KvHeads;

    /// <summary>Published shapes (Hugging Face config.json of each): GPT-2 small, TinyLlama, Llama 2 7B and 13B, LLaMA 65B.</summary>
    public static readonly IReadOnlyDictionary<string, ModelShape> Named = new Dictionary<string, ModelShape>(StringComparer.OrdinalIgnoreCase)
    {
        ["gpt2-124m"] = new("gpt2-124m", ModelFamily.Gpt, 768, 3072, 12, 12, 12, 50257, 1024, TiedHead: true, Bias: true),
        ["tinyllama-1.1b"] = new("tinyllama-1.1b", ModelFamily.Llama, 2048, 5632, 22, 32, 4, 32000, 2048, TiedHead: false, Bias: false),
        ["llama-2-7b"] = new("llama-2-7b", ModelFamily.Llama, 4096, 11008, 32, 32, 32, 32000, 4096, TiedHead: false, Bias: false),
        ["llama-2-13b"] = new("llama-2-13b", ModelFamily.Llama, 5120, 13824, 40, 40, 40, 32000, 4096, TiedHead: false, Bias: false),
        ["llama-65b"] = new("llama-65b", ModelFamily.Llama, 8192, 22016, 80, 64, 64, 32000, 2048, TiedHead: false, Bias: false),
    };

    /// <summary>A named shape, or the config.json at <paramref name="nameOrPath"/> (a file, or a folder holding one).</summary>
    public static ModelShape Resolve(string nameOrPath)
    {
        if (Named.TryGetValue(nameOrPath, out var shape)) return shape;
        string path = Directory.Exists(nameOrPath) ? Path.Combine(nameOrPath, "config.json") : nameOrPath;
        if (!File.Exists(path))
            throw new UserErrorException($"--model {nameOrPath}: not a named shape ({string.Join(", ", Named.Keys)}) nor a config.json file");
        return FromConfigJson(path);
    }

    /// <summary>
    /// A Hugging Face config.json: Llama/Mistral keys (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
    /// num_key_value_heads, vocab_size, max_position_embeddings, tie_word_embeddings) or GPT-2's (n_embd, n_layer, n_head,
    /// vocab_size, n_positions; MLP 4 n_embd, biases, tied head).
    /// </summary>
    public static ModelShape FromConfigJson(string path)
    {
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            root = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new UserErrorException($"{path}: not valid JSON: {e.Message}", e);
        }
        int? Int(string key) => root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;
        int Need(string key) => Int(key) ?? throw new UserErrorException($"{path}: config.json has no integer '{key}'");
        string name = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(path))) ?? path;
        ModelShape shape;
        if (Int("n_embd") is int gptDim)
        {
            shape = new(name, ModelFamily.Gpt, gptDim, Int("n_inner") ?? 4 * gptDim, Need("n_layer"), Need("n_head"), Need("n_head"),
                Need("vocab_size"), Int("n_positions") ?? 1024, TiedHead: true, Bias: true);
        }
        else
        {
            int heads = Need("num_attention_heads");
            bool tied = root.TryGetProperty("tie_word_embeddings", out var t) && t.ValueKind == JsonValueKind.True;
            shape = new(name, ModelFamily.Llama, Need("hidden_size"), Need("intermediate_size"), Need("num_hidden_layers"), heads,
                Int("num_key_value_heads") ?? heads, Need("vocab_size"), Int("max_position_embeddings") ?? 2048, tied, Bias: false);
        }
        shape.Validate(path);
        return shape;
    }

    /// <summary>The shape of a GPT built from <paramref name="c"/>.</summary>
    public static ModelShape Of(GptConfig c) =>
        new("gpt", ModelFamily.Gpt, c.NEmbd, 4 * c.NEmbd, c.NLayer, c.NHead, c.NHead, c.VocabSize, c.BlockSize, TiedHead: true, c.Bias);

    /// <summary>The shape of a Llama built from <paramref name="c"/>.</summary>
    public static ModelShape Of(LlamaConfig c, bool tied) =>
        new("llama", ModelFamily.Llama, c.Dim, c.HiddenDim, c.NLayers, c.NHeads, c.NKvHeads, c.VocabSize, c.SeqLen, tied, Bias: false);

    private void Validate(string source)
    {
        if (Dim <= 0 || Hidden <= 0 || Layers <= 0 || Heads <= 0 || KvHeads <= 0 || Vocab <= 0 || Context <= 0)
            throw new UserErrorException($"{source}: every size must be positive ({this})");
        if (Dim % Heads != 0 || Heads % KvHeads != 0)
            throw new UserErrorException($"{source}: {Heads} heads must divide width {Dim}, and {KvHeads} KV heads the heads");
    }

    /// <summary>Every weight tensor, with the names the models give them (nanoGPT's, Hugging Face's).</summary>
    public IEnumerable<WeightTensor> Weights()
    {
        long c = Dim, f = Hidden;
        if (Family == ModelFamily.Gpt)
        {
            yield return new("transformer.wte.weight", Vocab, c, WeightKind.Embedding);
            yield return new("transformer.wpe.weight", Context, c, WeightKind.Embedding);
            for (int l = 0; l < Layers; l++)
            {
                string p = $"transformer.h.{l}.";
                foreach (var (name, rows, cols) in new[] { ("attn.c_attn", 3 * c, c), ("attn.c_proj", c, c), ("mlp.c_fc", f, c), ("mlp.c_proj", c, f) })
                {
                    yield return new(p + name + ".weight", rows, cols, WeightKind.Matrix);
                    if (Bias) yield return new(p + name + ".bias", rows, 1, WeightKind.Vector);
                }
                foreach (var norm in new[] { "ln_1", "ln_2" })
                {
                    yield return new(p + norm + ".weight", c, 1, WeightKind.Vector);
                    if (Bias) yield return new(p + norm + ".bias", c, 1, WeightKind.Vector);
                }
            }
            yield return new("transformer.ln_f.weight", c, 1, WeightKind.Vector);
            if (Bias) yield return new("transformer.ln_f.bias", c, 1, WeightKind.Vector);
            yield break;
        }
        yield return new("model.embed_tokens.weight", Vocab, c, WeightKind.Embedding);
        for (int l = 0; l < Layers; l++)
        {
            string p = $"model.layers.{l}.";
            yield return new(p + "input_layernorm.weight", c, 1, WeightKind.Vector);
            yield return new(p + "self_attn.q_proj.weight", c, c, WeightKind.Matrix);
            yield return new(p + "self_attn.k_proj.weight", KvDim, c, WeightKind.Matrix);
            yield return new(p + "self_attn.v_proj.weight", KvDim, c, WeightKind.Matrix);
            yield return new(p + "self_attn.o_proj.weight", c, c, WeightKind.Matrix);
            yield return new(p + "post_attention_layernorm.weight", c, 1, WeightKind.Vector);
            yield return new(p + "mlp.gate_proj.weight", f, c, WeightKind.Matrix);
            yield return new(p + "mlp.up_proj.weight", f, c, WeightKind.Matrix);
            yield return new(p + "mlp.down_proj.weight", c, f, WeightKind.Matrix);
        }
        yield return new("model.norm.weight", c, 1, WeightKind.Vector);
        if (!TiedHead) yield return new("lm_head.weight", Vocab, c, WeightKind.Head);
    }

    public long ParameterCount => Weights().Sum(w => w.Elements);
}
