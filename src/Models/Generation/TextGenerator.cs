namespace ManagedTensor.Models.Generation;

/// <summary>What <see cref="TextGenerator.Run"/> needs: a model (any format <see cref="ModelLoader"/> reads), its tokenizer and sampling settings.</summary>
public sealed record GenerateOptions(
    string ModelPath,
    string? TokenizerPath = null,   // overrides the model's own (llama2.c models: tokenizer.bin beside the model by default)
    string Prompt = "",
    int MaxNewTokens = 256,
    SamplerOptions? Sampling = null,
    int[]? StopTokens = null,       // default: the model's (EOS, end of turn)
    int ContextLength = 0,          // KV cache positions (0: the model's context length, at most ChatSession.DefaultMaxContext)
    Device? Device = null,          // where the weights go (default: the CPU)
    DType? FloatWeights = null);    // Llama float matrices converted to this (f16, bf16) when given

/// <summary>One prompt, one continuation, streamed: `mt generate`.</summary>
public static class TextGenerator
{
    /// <summary>
    /// Loads the model named in <paramref name="opts"/>, generates, and streams the text to <paramref name="output"/>;
    /// notices (a trimmed prompt, a sliding context) go to <paramref name="notices"/>.
    /// </summary>
    public static GenerateResult Run(GenerateOptions opts, TextWriter output, TextWriter? notices = null)
    {
        var m = ModelLoader.Open(opts.ModelPath, opts.TokenizerPath, opts.Device, opts.FloatWeights);
        try
        {
            var prompt = opts.Prompt.Length == 0 ? StartTokens(m.Tokenizer) : m.Tokenizer.Encode(opts.Prompt, bos: m.Tokenizer.AddBos);
            output.Write(opts.Prompt);
            using var session = new ChatSession(m.Model, m.Tokenizer, opts.Sampling ?? new SamplerOptions(), opts.StopTokens ?? m.StopTokens, opts.ContextLength);
            session.Notice = line => (notices ?? output).WriteLine(line);
            if (prompt.Count <= session.ContextLength && prompt.Count + opts.MaxNewTokens > session.ContextLength)
                session.Notice($"[the prompt's {prompt.Count} tokens and --length {opts.MaxNewTokens} exceed the context of {session.ContextLength}: " +
                               "when it fills, the oldest tokens are dropped and generation goes on]");
            var result = session.Continue(prompt, opts.MaxNewTokens, output);
            output.WriteLine();
            return result;
        }
        finally { (m.Model as IDisposable)?.Dispose(); }
    }

    /// <summary>
    /// What an empty prompt starts from: BOS; else EOS (GPT-2's &lt;|endoftext|&gt;, which also separates its training
    /// documents); else a newline, as nanoGPT's sample.py starts a character model.
    /// </summary>
    public static List<int> StartTokens(ITokenizer tok)
    {
        if (tok.Bos >= 0) return [tok.Bos];
        if (tok.Eos >= 0) return [tok.Eos];
        var newline = tok.Encode("\n", bos: false);
        return newline.Count > 0 ? newline : throw new ArgumentException("the tokenizer has no BOS, EOS or newline to start from: give a prompt");
    }

    /// <summary>
    /// Runs the prompt (prefill), then samples up to <paramref name="maxNew"/> tokens, stopping at a stop token
    /// (not emitted); the context slides when it fills. Text is streamed to <paramref name="output"/> as tokens arrive.
    /// </summary>
    public static GenerateResult Generate(ICausalLM model, ITokenizer tok, List<int> prompt, int maxNew, SamplerOptions sampling,
                                          int[]? stopTokens = null, TextWriter? output = null, int contextLength = 0, Action<string>? notice = null)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt must hold at least one token (BOS)", nameof(prompt));
        using var session = new ChatSession(model, tok, sampling, stopTokens, contextLength) { Notice = notice };
        return session.Continue(prompt, maxNew, output);
    }
}
