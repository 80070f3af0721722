using System.Diagnostics;
using System.Text;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Tokenizers;

namespace ManagedTensor.Models.Generation;

/// <summary>What <see cref="LlamaGenerate.Run"/> needs: a model file (llama2.c .bin or .gguf), its tokenizer and sampling settings.</summary>
public sealed record GenerateOptions(
    string ModelPath,
    string? TokenizerPath = null,   // llama2.c tokenizer.bin; not needed for GGUF (vocabulary embedded)
    string Prompt = "",
    int MaxNewTokens = 256,
    SamplerOptions? Sampling = null,
    int[]? StopTokens = null,       // default: BOS and EOS
    int ContextLength = 0);         // KV cache positions (0: the model's context length)

/// <summary>Generated ids and speed. Prefill runs the prompt, decode the generated tokens (tokens per second of each).</summary>
public sealed record GenerateResult(List<int> PromptTokens, List<int> Generated, string Text, double PrefillTokensPerSecond, double DecodeTokensPerSecond);

public static class LlamaGenerate
{
    /// <summary>Loads the model and tokenizer named in <paramref name="opts"/>, generates, and streams the text to <paramref name="output"/>.</summary>
    public static GenerateResult Run(GenerateOptions opts, TextWriter output)
    {
        var (model, tokenizer) = Load(opts.ModelPath, opts.TokenizerPath);
        var prompt = tokenizer.Encode(opts.Prompt, bos: true);
        output.Write(opts.Prompt);
        var result = Generate(model, tokenizer, prompt, opts.MaxNewTokens, opts.Sampling ?? new SamplerOptions(), opts.StopTokens, output, opts.ContextLength);
        output.WriteLine();
        return result;
    }

    /// <summary>A model and tokenizer from a .gguf file, or from a llama2.c checkpoint plus its tokenizer.bin.</summary>
    public static (Llama Model, LlamaTokenizer Tokenizer) Load(string modelPath, string? tokenizerPath)
    {
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
    public static GenerateResult Generate(Llama model, LlamaTokenizer tok, List<int> prompt, int maxNew, SamplerOptions sampling,
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
    private readonly Llama _model;
    private readonly LlamaTokenizer _tok;
    private readonly Sampler _sampler;
    private readonly HashSet<int> _stops;
    private readonly KvCache _cache;
    private readonly List<int> _history = [];
    private int _cached; // tokens of _history already run through the model (their keys and values are in _cache)
    private readonly Decoder _decoder = Encoding.UTF8.GetDecoder(); // byte-fallback tokens may split a UTF-8 character across tokens

    /// <param name="contextLength">positions to keep (0: the model's whole context; long-context models need less memory with a shorter one)</param>
    public ChatSession(Llama model, LlamaTokenizer tok, SamplerOptions sampling, int[]? stopTokens = null, int contextLength = 0)
    {
        _model = model; _tok = tok;
        _sampler = new Sampler(sampling);
        _stops = new HashSet<int>(stopTokens ?? [tok.Bos, tok.Eos]);
        _cache = model.NewCache(contextLength);
    }

    /// <summary>Every token in the cache so far (prompts and replies).</summary>
    public IReadOnlyList<int> History => _history;

    /// <summary>Space left in the context window.</summary>
    public int Remaining => _cache.SeqLen - _history.Count;

    /// <summary>Runs the tokens not yet in the cache; returns the logits after the last one.</summary>
    private float[] Feed()
    {
        var pending = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_history)[_cached..];
        var logits = _model.Forward(pending, _cached, _cache); // a prompt runs as one batch (prefill)
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
        if (tokens.Count > Remaining) throw new InvalidOperationException($"{tokens.Count} tokens do not fit: {Remaining} of {_cache.SeqLen} positions left");
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
