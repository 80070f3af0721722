using System.Diagnostics;
using System.Text;
using ManagedTensor.Nn;

namespace ManagedTensor.Models.Generation;

/// <summary>Generated ids and speed. Prefill runs the prompt, decode the generated tokens (tokens per second of each).</summary>
public sealed record GenerateResult(List<int> PromptTokens, List<int> Generated, string Text, double PrefillTokensPerSecond, double DecodeTokensPerSecond);

/// <summary>
/// A conversation with one KV cache over any <see cref="ICausalLM"/>: each <see cref="Continue"/> feeds new tokens after
/// everything said so far and samples a reply, so earlier turns are never recomputed.
///
/// When the context fills, it slides, as llama.cpp's context shift does: the first tokens (BOS) are kept, the oldest
/// half of the rest is dropped, and what remains is run again from position 0 (positions move, so cached keys cannot
/// be reused; one prefill per shift). A prompt longer than the context keeps its first token and its last
/// context/2 tokens. Each shift and trim is reported through <see cref="Notice"/>; a reply is never cut short by the
/// context, only by a stop token or its length.
/// </summary>
public sealed class ChatSession : IDisposable
{
    private readonly ICausalLM _model;
    private readonly ITokenizer _tok;
    private readonly Sampler _sampler;
    private readonly HashSet<int> _stops;
    private readonly List<int> _history = [];
    private readonly KvCache _cache;
    private readonly int _sampled; // logits sampled: the tokenizer's ids (an embedding may be padded past them)
    private int _cached; // tokens of _history already run through the model (their keys and values are in _cache)
    private Decoder _decoder = Encoding.UTF8.GetDecoder(); // byte-fallback tokens may split a UTF-8 character across tokens

    /// <summary>
    /// The cache length when none is asked for: the model's context, but at most this. Llama 3.1 declares 131072 positions,
    /// and a cache that long for a 1B model (16 layers, 512 KV values per position, keys and values in float32) is 8 GiB.
    /// </summary>
    public const int DefaultMaxContext = 8192;

    /// <param name="contextLength">positions to keep (0: the model's context, capped at <see cref="DefaultMaxContext"/>)</param>
    public ChatSession(ICausalLM model, ITokenizer tok, SamplerOptions sampling, int[]? stopTokens = null, int contextLength = 0)
    {
        if (tok.VocabSize > model.VocabSize)
            throw new ArgumentException($"the tokenizer has {tok.VocabSize} tokens but the model's vocabulary is {model.VocabSize}");
        _model = model;
        _tok = tok;
        _sampler = new Sampler(sampling);
        _stops = new HashSet<int>(stopTokens ?? new[] { tok.Bos, tok.Eos }.Where(t => t >= 0));
        _sampled = tok.VocabSize;
        _cache = model.NewCache(1, CacheLengthFor(model, contextLength));
    }

    /// <summary>The cache length to use: <paramref name="contextLength"/> if given (at most the model's), else the model's context capped at <see cref="DefaultMaxContext"/>.</summary>
    public static int CacheLengthFor(ICausalLM model, int contextLength) =>
        contextLength > 0 ? Math.Min(contextLength, model.ContextLength) : Math.Min(model.ContextLength, DefaultMaxContext);

    public ITokenizer Tokenizer => _tok;
    public ICausalLM Model => _model;

    /// <summary>Positions the cache holds: the context the model sees.</summary>
    public int ContextLength => _cache.Capacity;

    /// <summary>Every token in the context so far (prompts and replies; older ones dropped when the context slid).</summary>
    public IReadOnlyList<int> History => _history;

    /// <summary>How many times the context slid or a prompt was trimmed.</summary>
    public int Shifts { get; private set; }

    /// <summary>Reports each slide of the context and each trimmed prompt, in a line (the CLI prints it to stderr).</summary>
    public Action<string>? Notice { get; set; }

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
    public int Remaining => ContextLength - _history.Count;

    /// <summary>Runs the tokens not yet in the cache (a prompt as one batch: prefill); returns the logits after the last one.</summary>
    private float[] Feed()
    {
        _cache.Truncate(_cached);
        var pending = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_history)[_cached..];
        var logits = _model.NextLogits(pending, _cache);
        _cached = _history.Count;
        return logits;
    }

    /// <summary>Tokens kept at the start when the context slides: BOS, when the conversation starts with it.</summary>
    private int KeepCount => _history.Count > 0 && _history[0] == _tok.Bos ? 1 : 0;

    /// <summary>Drops the oldest half of the history after the kept tokens, so that <paramref name="needed"/> more tokens fit.</summary>
    private void Slide(int needed)
    {
        int keep = KeepCount, before = _history.Count;
        int drop = Math.Max((_history.Count - keep) / 2, _history.Count + needed - ContextLength);
        drop = Math.Min(drop, _history.Count - keep);
        _history.RemoveRange(keep, drop);
        _cached = Math.Min(_cached, keep); // everything after the kept tokens sits at new positions: run again
        Shifts++;
        Notice?.Invoke($"[context full ({ContextLength} tokens): dropped the oldest {drop} of {before} tokens and continued]");
    }

    /// <summary>Encodes <paramref name="text"/> (BOS only at the start of the conversation) and answers it.</summary>
    public GenerateResult Say(string text, int maxNew, TextWriter? output = null) =>
        Continue(_tok.Encode(text, bos: _history.Count == 0), maxNew, output);

    /// <summary>Feeds <paramref name="tokens"/>, then samples up to <paramref name="maxNew"/> tokens (stop tokens end the turn and are not kept).</summary>
    public GenerateResult Continue(List<int> tokens, int maxNew, TextWriter? output = null)
    {
        if (tokens.Count == 0) throw new ArgumentException("nothing to continue from: no tokens given", nameof(tokens));
        foreach (int t in tokens)
            if ((uint)t >= (uint)_model.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), $"token {t} is outside the model's {_model.VocabSize}-token vocabulary");
        var prompt = tokens;
        if (tokens.Count > Remaining)
        {
            int keepFirst = _history.Count == 0 && tokens[0] == _tok.Bos ? 1 : 0;
            if (_history.Count > 0) Slide(tokens.Count);
            if (tokens.Count > Remaining)
            {
                // The prompt alone does not fit: keep its first token if BOS and its last half-context of tokens.
                int tail = Math.Min(tokens.Count - keepFirst, ContextLength / 2);
                prompt = [.. tokens.Take(keepFirst), .. tokens.Skip(tokens.Count - tail)];
                if (_history.Count + prompt.Count > ContextLength) Truncate(0);
                Shifts++;
                Notice?.Invoke($"[the prompt's {tokens.Count} tokens do not fit the context of {ContextLength}: kept {(keepFirst == 1 ? "the first and " : "")}the last {tail}]");
            }
        }
        var generated = new List<int>();
        var text = new StringBuilder();
        var chars = new char[64];

        var sw = Stopwatch.StartNew();
        _history.AddRange(prompt);
        var logits = Feed();
        double prefillSec = sw.Elapsed.TotalSeconds;

        sw.Restart();
        while (generated.Count < maxNew)
        {
            int next = _sampler.Sample(logits.AsSpan(0, _sampled), _history);
            if (_stops.Contains(next)) break;
            var bytes = _tok.DecodeBytes(_history[^1], next);
            generated.Add(next);
            _history.Add(next);
            if (chars.Length < bytes.Length + 4) chars = new char[bytes.Length + 4];
            int n = _decoder.GetChars(bytes, chars, flush: false);
            text.Append(chars, 0, n);
            output?.Write(chars, 0, n);
            if (generated.Count >= maxNew) break; // the last token is fed at the start of the next turn
            if (_history.Count > ContextLength)
            {
                output?.Flush();
                Slide(0);
            }
            logits = Feed();
        }
        double decodeSec = sw.Elapsed.TotalSeconds;
        output?.Flush();
        return new GenerateResult(prompt, generated, text.ToString(),
            prompt.Count / Math.Max(prefillSec, 1e-9), generated.Count / Math.Max(decodeSec, 1e-9));
    }

    public void Dispose() => _cache.Dispose();
}
