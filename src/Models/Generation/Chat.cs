using System.Text;

namespace ManagedTensor.Models.Generation;

/// <summary>
/// A conversation in a chat format over one KV cache. Each turn renders the whole conversation with the template (as
/// HF's apply_chat_template would) and feeds only what the cache does not hold yet: the cache's tokens stand for a text
/// (the prompts fed plus the replies as generated), and the longest run of cached tokens whose text is a prefix of the new
/// rendering is kept; the rest of the rendering is tokenized (special tokens parsed) and fed. Most templates only append,
/// so a turn costs its new tokens; where a template rewrites earlier text (Llama 3 trims replies, Mistral v3 moves the
/// system prompt to the last user turn) the cache is rolled back to the first difference. A reply ends at a stop token,
/// which is not fed: the next rendering writes the template's own end-of-turn text instead.
/// When the conversation and room for the reply (up to its length, at most half the context) no longer fit the context,
/// the oldest turns are dropped (the system message stays), as ollama does, with a notice; the rendering then differs
/// from its start and is fed again. A context that fills during a reply slides (<see cref="ChatSession"/>).
/// </summary>
public sealed class TemplatedChat : IDisposable
{
    private readonly ChatSession _session;
    private readonly ITokenizer _tok;
    private readonly List<ChatMessage> _messages = [];
    private readonly StringBuilder _fed = new();   // the text the cached tokens stand for
    private readonly List<int> _ends = [];         // per cached token: _fed's length once it is included (int.MaxValue: unknown)

    public ChatFormat Format { get; }
    public IReadOnlyList<ChatMessage> Messages => _messages;
    public ChatSession Session => _session;

    /// <summary>The text the cached tokens stand for: every rendering fed so far and the replies as generated.</summary>
    public string FedText => _fed.ToString();

    /// <param name="system">an optional system message, first in the conversation</param>
    /// <param name="contextLength">positions of the KV cache (0: the model's context, capped at <see cref="ChatSession.DefaultMaxContext"/>)</param>
    public TemplatedChat(ICausalLM model, ITokenizer tok, ChatFormat format, SamplerOptions sampling, int[] stopTokens, string? system = null, int contextLength = 0)
    {
        _tok = tok;
        Format = format;
        _session = new ChatSession(model, tok, sampling, stopTokens, contextLength);
        if (!string.IsNullOrEmpty(system)) _messages.Add(ChatMessage.System(system));
    }

    /// <summary>Reports dropped turns and a sliding context (the CLI prints it to stderr).</summary>
    public Action<string>? Notice
    {
        get => _session.Notice;
        set => _session.Notice = value;
    }

    private string Bos => _tok.Bos >= 0 ? _tok.TokenText(_tok.Bos) : "";
    private string Eos => _tok.Eos >= 0 ? _tok.TokenText(_tok.Eos) : "";

    /// <summary>The prompt text for the conversation so far plus the generation prompt.</summary>
    public string Render() => ChatTemplates.Format(Format, _messages, addGenerationPrompt: true, Bos, Eos);

    /// <summary>What feeding the current rendering takes: cached tokens kept, the text they stand for, and the tokens to feed after them.</summary>
    private (int Keep, int FedLength, string Delta, List<int> Tokens) Plan()
    {
        string full = Render();
        // Keep the cached tokens whose text the new rendering repeats exactly.
        int common = 0, fedLength = _fed.Length;
        while (common < fedLength && common < full.Length && _fed[common] == full[common]) common++;
        int keep = 0;
        while (keep < _ends.Count && _ends[keep] <= common) keep++;
        int kept = keep == 0 ? 0 : _ends[keep - 1];
        string delta = full[kept..];
        bool bos = keep == 0 && _tok.AddBos && !(Bos.Length > 0 && full.StartsWith(Bos, StringComparison.Ordinal));
        return (keep, kept, delta, _tok.Encode(delta, bos: bos, parseSpecial: true));
    }

    /// <summary>Drops the oldest turn (a user message and the reply after it; never the system message or the newest message).</summary>
    private bool DropOldestTurn()
    {
        int first = _messages.Count > 0 && _messages[0].Role == "system" ? 1 : 0;
        if (_messages.Count - first < 2) return false;
        int n = _messages[first].Role == "user" && _messages.Count - first > 2 && _messages[first + 1].Role == "assistant" ? 2 : 1;
        _messages.RemoveRange(first, n);
        return true;
    }

    /// <summary>Adds the user's message, feeds what is new, and samples the assistant's reply (streamed to <paramref name="output"/>).</summary>
    public GenerateResult Say(string user, int maxNew, TextWriter? output = null)
    {
        _messages.Add(ChatMessage.User(user));
        int reserve = Math.Min(maxNew, _session.ContextLength / 2), dropped = 0;
        var plan = Plan();
        while (plan.Keep + plan.Tokens.Count + reserve > _session.ContextLength && DropOldestTurn())
        {
            dropped++;
            plan = Plan();
        }
        if (dropped > 0)
            Notice?.Invoke($"[context full ({_session.ContextLength} tokens): dropped the oldest {dropped} turn{(dropped == 1 ? "" : "s")} of the conversation]");
        var (keep, kept, delta, tokens) = plan;
        if (tokens.Count == 0) throw new InvalidOperationException($"the {ChatTemplates.NameOf(Format)} rendering added no tokens to feed");
        _session.Truncate(keep);
        _ends.RemoveRange(keep, _ends.Count - keep);
        _fed.Length = kept;
        _fed.Append(delta);
        foreach (var _ in tokens) _ends.Add(_fed.Length); // the delta counts only as a whole

        int shifts = _session.Shifts;
        var result = _session.Continue(tokens, maxNew, output);
        if (_session.Shifts == shifts) AccountReply(result.Generated);
        else
        {
            // The context slid (or the prompt was trimmed): the cache no longer stands for a prefix of any rendering.
            // Start afresh next turn: render, drop old turns until it fits, and feed it all.
            _session.Truncate(0);
            _ends.Clear();
            _fed.Clear();
        }
        _messages.Add(ChatMessage.Assistant(result.Text));
        return result;
    }

    public void Dispose() => _session.Dispose();

    /// <summary>Appends the reply's text to the fed text, token by token (a token that ends inside a UTF-8 character is dated by the token that completes it).</summary>
    private void AccountReply(List<int> generated)
    {
        var decoder = Encoding.UTF8.GetDecoder();
        int pending = 0, prev = _session.History.Count > generated.Count ? _session.History[^(generated.Count + 1)] : -1;
        var chars = new char[64];
        foreach (int t in generated)
        {
            var bytes = _tok.DecodeBytes(prev, t);
            prev = t;
            if (chars.Length < bytes.Length + 4) chars = new char[bytes.Length + 4];
            int n = decoder.GetChars(bytes, chars, flush: false);
            _fed.Append(chars, 0, n);
            pending++;
            if (n > 0 || bytes.Length == 0)
            {
                for (int i = 0; i < pending; i++) _ends.Add(_fed.Length);
                pending = 0;
            }
        }
        for (int i = 0; i < pending; i++) _ends.Add(int.MaxValue); // an unfinished character: never kept on a rollback
    }
}
