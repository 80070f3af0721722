using ManagedTensor.Models.Data;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Tokenizers;
using ManagedTensor.Models.Training;

namespace ManagedTensor.Models.Generation;

/// <summary>
/// A language model ready to generate: the network, its tokenizer, the checkpoint's chat template (Jinja source, or
/// null) and the ids that end a reply (EOS, and end-of-turn ids such as Llama 3's &lt;|eot_id|&gt; where the checkpoint
/// lists them). The tokenizer never has more tokens than the model's embedding has rows (checked when built); it may
/// have fewer (an embedding padded to a multiple of 64, as nanoGPT's 50304 for GPT-2's 50257), and then only the
/// tokenizer's ids are sampled.
/// </summary>
public sealed record LoadedModel
{
    public LoadedModel(ICausalLM model, ITokenizer tokenizer, string? chatTemplate, int[] stopTokens, string source)
    {
        if (tokenizer.VocabSize > model.VocabSize)
            throw new InvalidModelFileException(source,
                $"the tokenizer has {tokenizer.VocabSize} tokens but the model's vocabulary (embedding rows) is {model.VocabSize}: " +
                $"ids {model.VocabSize}..{tokenizer.VocabSize - 1} have no embedding (a tokenizer made for another model?)");
        Model = model;
        Tokenizer = tokenizer;
        ChatTemplate = chatTemplate;
        StopTokens = stopTokens;
        Source = source;
    }

    public ICausalLM Model { get; }
    public ITokenizer Tokenizer { get; }
    public string? ChatTemplate { get; }
    public int[] StopTokens { get; }

    /// <summary>The file or directory the model came from.</summary>
    public string Source { get; }
}

/// <summary>
/// The one entry point that reads every language model the project reads, detecting the format:
///   a directory with ckpt.safetensors, or such a file (metadata format managedtensor.gpt.v1): an `mt train gpt` run;
///   a directory with config.json, or the config.json: a Hugging Face checkpoint, LlamaForCausalLM / MistralForCausalLM
///     (tokenizer.json) or GPT2LMHeadModel (tokenizer.json, else vocab.json + merges.txt, else GPT-2's files in data/);
///   a file starting with "GGUF": a llama.cpp model with its sentencepiece vocabulary;
///   a file starting with llm.c's magic 20240326: llm.c's GPT-2 (tokenized with GPT-2's BPE: llm.c's own tokenizer file
///     has no merges);
///   any other file: a llama2.c checkpoint, with tokenizer.bin (given, or beside it).
/// <c>tokenizerPath</c> overrides the tokenizer: a llama2.c tokenizer.bin, a tokenizer.json, or GPT-2's vocab.json
/// (encoder.json) with merges.txt (vocab.bpe) beside it. Weights go to <c>device</c>; Llama float matrices are converted to
/// <c>floatWeights</c> when given.
/// </summary>
public static class ModelLoader
{
    public static LoadedModel Open(string path, string? tokenizerPath = null, Device? device = null, DType? floatWeights = null)
    {
        var dev = device ?? Device.Cpu;
        if (Directory.Exists(path) && File.Exists(Path.Combine(path, GptCheckpoint.FileName)))
            return FromTrainCheckpoint(Path.Combine(path, GptCheckpoint.FileName), tokenizerPath, dev);
        if (HfCheckpoint.IsCheckpoint(path)) return FromHuggingFace(path, tokenizerPath, dev, floatWeights);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such model file or directory", path);
        switch (Magic(path))
        {
            case GgufFile.Magic:
                {
                    using var g = GgufFile.Open(path);
                    string? template = g.Has("tokenizer.chat_template") ? g.GetString("tokenizer.chat_template") : null;
                    int[] eot = new[] { "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id" }.Where(g.Has).Select(k => g.GetInt(k)).ToArray();
                    var tok = tokenizerPath is null ? GgufLlama.LoadTokenizer(g) : LoadTokenizer(tokenizerPath, g.Tensor("token_embd.weight").Dims[^1]);
                    return new LoadedModel(GgufLlama.LoadModel(g, dev, floatWeights), tok, template, StopTokens(tok, template, eot), path);
                }
            case LlmC.ModelMagic:
                {
                    var model = GptWeights.LoadLlmC(path, dev);
                    var tok = tokenizerPath is null ? Gpt2Tokenizer.FromDataFolder() : LoadTokenizer(tokenizerPath, model.VocabSize);
                    return new LoadedModel(model, tok, null, StopTokens(tok, null, []), path);
                }
        }
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return FromTrainCheckpoint(path, tokenizerPath, dev);
        var llama = Llama2c.Load(path, dev, floatWeights);
        var t2 = LoadTokenizer(tokenizerPath ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "tokenizer.bin"), llama.VocabSize);
        return new LoadedModel(llama, t2, null, StopTokens(t2, null, []), path);
    }

    /// <summary>A llama2.c checkpoint or GGUF file as the Llama model and its sentencepiece tokenizer (what `mt quantize` rewrites).</summary>
    public static (Llama Model, LlamaTokenizer Tokenizer) OpenLlama(string path, string? tokenizerPath = null)
    {
        var m = Open(path, tokenizerPath);
        if (m.Model is not Llama llama || m.Tokenizer is not LlamaTokenizer tok)
            throw new ArgumentException($"{path}: a {m.Model.Architecture} model with a {m.Tokenizer.Kind} tokenizer; a Llama with a sentencepiece vocabulary (llama2.c .bin or GGUF) is needed here");
        return (llama, tok);
    }

    /// <summary>The first four bytes as a little-endian integer (0 for shorter files).</summary>
    private static uint Magic(string path)
    {
        using var f = new ModelFile(path);
        return f.Length >= 4 ? f.ReadU32("magic") : 0;
    }

    private static LoadedModel FromHuggingFace(string path, string? tokenizerPath, Device device, DType? floatWeights)
    {
        using var ck = HfCheckpoint.Open(path);
        bool gpt2 = ck.Config.GetString("model_type") == "gpt2"
                    || (ck.Config.Get("architectures") is { ValueKind: System.Text.Json.JsonValueKind.Array } a && a.EnumerateArray().Any(e => e.ToString() == "GPT2LMHeadModel"));
        if (gpt2)
        {
            var model = GptWeights.LoadHf(ck, device);
            ITokenizer tok;
            string? template = null;
            int[] eos = ck.Config.GetIntList("eos_token_id");
            if (tokenizerPath is not null) tok = LoadTokenizer(tokenizerPath, model.VocabSize);
            else if (File.Exists(Path.Combine(ck.Directory, HfTokenizer.TokenizerFile)))
                (tok, template) = HfTokenizer.Load(ck.Directory, ck.Config.GetIntList("bos_token_id").FirstOrDefault(-1), eos.FirstOrDefault(-1));
            else if (File.Exists(Path.Combine(ck.Directory, "vocab.json")) && File.Exists(Path.Combine(ck.Directory, "merges.txt")))
                tok = Gpt2Tokenizer.FromFiles(Path.Combine(ck.Directory, "vocab.json"), Path.Combine(ck.Directory, "merges.txt"));
            else tok = Gpt2Tokenizer.FromDataFolder();
            return new LoadedModel(model, tok, template, StopTokens(tok, template, eos), ck.Directory);
        }
        var llama = HfLlama.LoadModel(ck, device, floatWeights);
        var ids = HfLlama.EosTokenIds(ck);
        if (tokenizerPath is not null)
        {
            var given = LoadTokenizer(tokenizerPath, llama.VocabSize);
            return new LoadedModel(llama, given, null, StopTokens(given, null, ids), ck.Directory);
        }
        var (bpe, chat) = HfTokenizer.Load(ck.Directory, ck.Config.GetIntList("bos_token_id").FirstOrDefault(-1), ids.FirstOrDefault(-1));
        return new LoadedModel(llama, bpe, chat, StopTokens(bpe, chat, ids), Path.Combine(ck.Directory, HfTokenizer.TokenizerFile));
    }

    private static LoadedModel FromTrainCheckpoint(string file, string? tokenizerPath, Device device)
    {
        using var ckpt = GptCheckpoint.Load(file);
        var trained = ckpt.CreateModel(device);
        // Generation runs a KV cache through ICausalLM; the recurrent and mixture architectures decode through mt sample.
        if (trained is not ICausalLM model)
            throw new InvalidModelFileException(file, $"a {trained.Architecture} checkpoint: mt generate, chat and serve run models with a KV cache (GPT, Llama); " +
                                                      $"sample this one with `mt sample --out-dir {Path.GetDirectoryName(Path.GetFullPath(file))}`");
        trained.Eval();
        var tok = tokenizerPath is null ? ckpt.Tokenizer : LoadTokenizer(tokenizerPath, model.VocabSize);
        return new LoadedModel(model, tok, null, StopTokens(tok, null, []), file);
    }

    /// <summary>
    /// A tokenizer file: tokenizer.json (Hugging Face), vocab.json / encoder.json with merges.txt / vocab.bpe beside it
    /// (GPT-2's BPE), or a llama2.c tokenizer.bin of <paramref name="vocabSize"/> tokens.
    /// </summary>
    public static ITokenizer LoadTokenizer(string path, long vocabSize)
    {
        string name = Path.GetFileName(path);
        if (name.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            if (name.Equals(HfTokenizer.TokenizerFile, StringComparison.OrdinalIgnoreCase))
                return HfTokenizer.Parse(HfJson.Load(path), null);
            string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
            string? merges = new[] { "merges.txt", "vocab.bpe" }.Select(m => Path.Combine(dir, m)).FirstOrDefault(File.Exists);
            if (merges is null) throw new InvalidModelFileException(path, "a GPT-2 vocabulary needs its merges (merges.txt or vocab.bpe) in the same directory");
            return Gpt2Tokenizer.FromFiles(path, merges);
        }
        return LlamaTokenizer.LoadLlama2c(path, checked((int)vocabSize));
    }

    /// <summary>EOS, the checkpoint's extra end ids, and the template's end-of-turn token where the vocabulary has it (llama.cpp's end-of-generation set).</summary>
    public static int[] StopTokens(ITokenizer tok, string? template, IEnumerable<int> extra)
    {
        var stops = new List<int>();
        if (tok.Eos >= 0) stops.Add(tok.Eos);
        stops.AddRange(extra.Where(id => (uint)id < (uint)tok.VocabSize));
        if (ChatTemplates.Detect(template) is { } f && ChatTemplates.EndOfTurn(f) is { } end && tok.TokenId(end) is int id) stops.Add(id);
        return stops.Distinct().ToArray();
    }
}
