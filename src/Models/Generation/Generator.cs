using System.Diagnostics;
using System.Text;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Tokenizers;

namespace ManagedTensor.Models.Generation;

/// <summary>What <see cref="LlamaGenerate.Run"/> needs: a model (llama2.c .bin, .gguf, or a Hugging Face directory / config.json), its tokenizer and sampling settings.</summary>
public sealed record GenerateOptions(
    string ModelPath,
    string? TokenizerPath = null,   // llama2.c tokenizer.bin; not needed for GGUF or HF (vocabulary included)
    string Prompt = "",
    int MaxNewTokens = 256,
    SamplerOptions? Sampling = null,
    int[]? StopTokens = null,       // default: BOS and EOS
    int ContextLength = 0,          // KV cache positions (0: the model's context length, at most ChatSession.DefaultMaxContext)
    Device? Device = null,          // null or cpu: the span model; else DeviceLlama on that device
    DType DeviceDType = DType.F32); // the weights' dtype on a device

/// <summary>Generated ids and speed. Prefill runs the prompt, decode the generated tokens (tokens per second of each).</summary>
public sealed record GenerateResult(List<int> PromptTokens, List<int> Generated, string Text, double PrefillTokensPerSecond, double DecodeTokensPerSecond);

/// <summary>
/// A model ready to generate: the network, its tokenizer, the checkpoint's chat template (Jinja source, or null) and the
/// ids that end a reply (EOS, and end-of-turn ids such as Llama 3's &lt;|eot_id|&gt; where the checkpoint lists them).
/// </summary>
public sealed record LoadedModel(Llama Model, IPromptTokenizer Tokenizer, string? ChatTemplate, int[] StopTokens);

public static class LlamaGenerate
{
    /// <summary>Loads the model and tokenizer named in <paramref name="opts"/>, generates, and streams the text to <paramref name="output"/>.</summary>
    public static GenerateResult Run(GenerateOptions opts, TextWriter output)
    {
        var m = Open(opts.ModelPath, opts.TokenizerPath);
        var prompt = m.Tokenizer.Encode(opts.Prompt, bos: m.Tokenizer.AddBos || opts.Prompt.Length == 0);
        output.Write(opts.Prompt);
        using var runner = Runner(m.Model, opts.Device ?? Device.Cpu, opts.ContextLength, opts.DeviceDType);
        var result = new ChatSession(runner, m.Tokenizer, opts.Sampling ?? new SamplerOptions(), opts.StopTokens ?? m.StopTokens).Continue(prompt, opts.MaxNewTokens, output);
        output.WriteLine();
        return result;
    }

    /// <summary>
    /// The model with a KV cache on <paramref name="device"/>: the span model on the CPU (quantized weights multiplied
    /// as they are), <see cref="DeviceLlama"/> elsewhere (weights expanded to <paramref name="dtype"/> on the device).
    /// </summary>
    public static ILlamaRunner Runner(Llama model, Device device, int contextLength = 0, DType dtype = DType.F32)
    {
        int cache = ChatSession.CacheLengthFor(model.Config, contextLength);
        return device == Device.Cpu ? new CachedLlama(model, cache) : DeviceLlama.From(model, device, cache, dtype);
    }

    /// <summary>
    /// Any supported model: a Hugging Face checkpoint (a directory with config.json, or the config.json itself: safetensors
    /// weights and tokenizer.json), a .gguf file, or a llama2.c checkpoint plus its tokenizer.bin.
    /// </summary>
    public static LoadedModel Open(string modelPath, string? tokenizerPath = null)
    {
        if (HfCheckpoint.IsCheckpoint(modelPath))
        {
            using var ck = HfCheckpoint.Open(modelPath);
            var model = HfLlama.LoadModel(ck);
            var eos = HfLlama.EosTokenIds(ck);
            var (tok, template) = HfTokenizer.Load(ck.Directory, ck.Config.GetIntList("bos_token_id").FirstOrDefault(-1), eos.FirstOrDefault(-1));
            if (tok.VocabSize > model.Config.VocabSize)
                throw new InvalidModelFileException(Path.Combine(ck.Directory, HfTokenizer.TokenizerFile),
                    $"the tokenizer has {tok.VocabSize} tokens but the model's vocab_size is {model.Config.VocabSize}");
            return new LoadedModel(model, tok, template, StopTokens(tok, template, eos));
        }
        if (modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            using var g = GgufFile.Open(modelPath);
            var tok = GgufLlama.LoadTokenizer(g);
            string? template = g.Has("tokenizer.chat_template") ? g.GetString("tokenizer.chat_template") : null;
            int[] eot = new[] { "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id" }.Where(g.Has).Select(k => g.GetInt(k)).ToArray();
            return new LoadedModel(GgufLlama.LoadModel(g), tok, template, StopTokens(tok, template, eot));
        }
        var (m, t) = Load(modelPath, tokenizerPath);
        return new LoadedModel(m, t, null, StopTokens(t, null, []));
    }

    /// <summary>EOS, the checkpoint's extra end ids, and the template's end-of-turn token where the vocabulary has it (llama.cpp's end-of-generation set).</summary>
    public static int[] StopTokens(IPromptTokenizer tok, string? template, IEnumerable<int> extra)
    {
        var stops = new List<int>();
        if (tok.Eos >= 0) stops.Add(tok.Eos);
        stops.AddRange(extra.Where(id => (uint)id < (uint)tok.VocabSize));
        if (ChatTemplates.Detect(template) is { } f && ChatTemplates.EndOfTurn(f) is { } end && tok.TokenId(end) is int id) stops.Add(id);
        return stops.Distinct().ToArray();
    }

    /// <summary>A model and tokenizer from a .gguf file, or from a llama2.c checkpoint plus its tokenizer.bin.</summary>
    public static (Llama Model, LlamaTokenizer Tokenizer) Load(string modelPath, string? tokenizerPath)
    {
        if (HfCheckpoint.IsCheckpoint(modelPath))
            throw new ArgumentException($"{modelPath} is a Hugging Face checkpoint: open it with LlamaGenerate.Open (its tokenizer is tokenizer.json, not a sentencepiece vocabulary)", nameof(modelPath));
        if (modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            using var g = GgufFile.Open(modelPath);
            return (GgufLlama.LoadModel(g), GgufLlama.LoadTokenizer(g));
        }
        var model = Llama2c.Load(modelPath);
        tokenizerPath ??= Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, "tokenizer.bin");
        return (model, LlamaTokenizer.LoadLlama2c(tokenizerPath, model.Config.VocabSize));
    }

    /// <summary>
    /// Runs the prompt (prefill), then samples up to <paramref name="maxNew"/> tokens, stopping at a stop token
    /// (not emitted) or the context length. Text is streamed to <paramref name="output"/> as tokens arrive.
    /// </summary>
    public static GenerateResult Generate(Llama model, IPromptTokenizer tok, List<int> prompt, int maxNew, SamplerOptions sampling,
                                          int[]? stopTokens = null, TextWriter? output = null, int contextLength = 0)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt must hold at least one token (BOS)", nameof(prompt));
        var session = new ChatSession(model, tok, sampling, stopTokens, contextLength);
        return session.Continue(prompt, maxNew, output);
    }
}

/// <summary>
/// A conversation with one KV cache: each <see cref="Continue"/> feeds new tokens after everything said so far and
/// samples a reply, so earlier turns are never recomputed. <see cref="LlamaGenerate.Generate"/> is a one-turn session.
/// </summary>
public sealed class ChatSession
{
    private readonly ILlamaRunner _model;
    private readonly IPromptTokenizer _tok;
    private readonly Sampler _sampler;
    private readonly HashSet<int> _stops;
    private readonly List<int> _history = [];
    private int _cached; // tokens of _history already run through the model (their keys and values are in _cache)
    private Decoder _decoder = Encoding.UTF8.GetDecoder(); // byte-fallback tokens may split a UTF-8 character across tokens

    /// <summary>
    /// The cache length when none is asked for: the model's context, but at most this. Llama 3.1 declares 131072 positions,
    /// and a cache that long for a 1B model (16 layers, 512 KV values per position, keys and values in float32) is 8 GiB.
    /// </summary>
    public const int DefaultMaxContext = 8192;

    /// <param name="contextLength">positions to keep (0: the model's context, capped at <see cref="DefaultMaxContext"/>)</param>
    public ChatSession(Llama model, IPromptTokenizer tok, SamplerOptions sampling, int[]? stopTokens = null, int contextLength = 0)
        : this(new CachedLlama(model, CacheLengthFor(model.Config, contextLength)), tok, sampling, stopTokens) { }

    /// <summary>A session over <paramref name="model"/> (the span model on the CPU, or <see cref="DeviceLlama"/>), its cache as long as the runner's.</summary>
    public ChatSession(ILlamaRunner model, IPromptTokenizer tok, SamplerOptions sampling, int[]? stopTokens = null)
    {
        _model = model; _tok = tok;
        _sampler = new Sampler(sampling);
        _stops = new HashSet<int>(stopTokens ?? new[] { tok.Bos, tok.Eos }.Where(t => t >= 0));
    }

    /// <summary>The cache length to use: <paramref name="contextLength"/> if given, else the model's context capped at <see cref="DefaultMaxContext"/>.</summary>
    public static int CacheLengthFor(LlamaConfig config, int contextLength) =>
        contextLength > 0 ? contextLength : Math.Min(config.SeqLen, DefaultMaxContext);

    public IPromptTokenizer Tokenizer => _tok;

    /// <summary>Every token in the cache so far (prompts and replies).</summary>
    public IReadOnlyList<int> History => _history;

    /// <summary>
    /// Forgets everything after the first <paramref name="count"/> tokens: their cache positions are simply overwritten by
    /// what is fed next (keys and values depend only on the tokens before them), so a conversation can be re-written from there.
    /// </summary>
    public void Truncate(int count)
    {
        if (count < 0 || count > _history.Count) throw new ArgumentOutOfRangeException(nameof(count), $"cannot keep {count} of {_history.Count} tokens");
        _history.RemoveRange(count, _history.Count - count);
        _cached = Math.Min(_cached, count);
        _decoder = Encoding.UTF8.GetDecoder();
    }

    /// <summary>Space left in the context window.</summary>
    public int Remaining => _model.CacheLength - _history.Count;

    /// <summary>Runs the tokens not yet in the cache; returns the logits after the last one.</summary>
    private float[] Feed()
    {
        var pending = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_history)[_cached..];
        var logits = _model.Forward(pending, _cached); // a prompt runs as one batch (prefill)
        _cached = _history.Count;
        return logits;
    }

    /// <summary>Encodes <paramref name="text"/> (BOS only at the start of the conversation) and answers it.</summary>
    public GenerateResult Say(string text, int maxNew, TextWriter? output = null) =>
        Continue(_tok.Encode(text, bos: _history.Count == 0), maxNew, output);

    /// <summary>Feeds <paramref name="tokens"/>, then samples up to <paramref name="maxNew"/> tokens (stop tokens end the turn and are not kept).</summary>
    public GenerateResult Continue(List<int> tokens, int maxNew, TextWriter? output = null)
    {
        if (tokens.Count == 0) throw new ArgumentException("nothing to continue from: no tokens given", nameof(tokens));
        if (tokens.Count > Remaining) throw new UserErrorException($"{tokens.Count} tokens do not fit the model's context: {Remaining} of {_model.CacheLength} positions left");
        var generated = new List<int>();
        var text = new StringBuilder();
        var chars = new char[64];

        var sw = Stopwatch.StartNew();
        _history.AddRange(tokens);
        var logits = Feed();
        double prefillSec = sw.Elapsed.TotalSeconds;

        sw.Restart();
        while (generated.Count < maxNew)
        {
            int next = _sampler.Sample(logits, _history);
            if (_stops.Contains(next)) break;
            var bytes = _tok.DecodeBytes(_history[^1], next);
            generated.Add(next);
            _history.Add(next);
            if (chars.Length < bytes.Length + 4) chars = new char[bytes.Length + 4];
            int n = _decoder.GetChars(bytes, chars, flush: false);
            text.Append(chars, 0, n);
            output?.Write(chars, 0, n);
            if (generated.Count >= maxNew || Remaining == 0) break; // the last token is fed at the start of the next turn
            logits = Feed();
        }
        double decodeSec = sw.Elapsed.TotalSeconds;
        output?.Flush();
        return new GenerateResult(tokens, generated, text.ToString(),
            tokens.Count / Math.Max(prefillSec, 1e-9), generated.Count / Math.Max(decodeSec, 1e-9));
    }
}
