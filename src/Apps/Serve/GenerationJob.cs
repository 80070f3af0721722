using System.Threading.Channels;

namespace ManagedTensor.Apps.Serve;

/// <summary>Why a completion ended, in OpenAI's words where it has them.</summary>
public enum FinishReason
{
    /// <summary>An end-of-generation token or a stop string.</summary>
    Stop,
    /// <summary>max_tokens reached (or the context full, which max_tokens is capped to).</summary>
    Length,
    /// <summary>The client went away or the server is stopping; nobody reads this result.</summary>
    Cancelled,
}

/// <summary>Token counts as OpenAI's `usage` reports them, and why generation ended.</summary>
public sealed record GenerationResult(FinishReason Reason, int PromptTokens, int CompletionTokens);

/// <summary>
/// One request's generation as the scheduler sees it: the prompt, how to sample, when to end, and the text produced,
/// passed from the scheduler's thread to the request's handler through a channel. A job is waiting, then running, then
/// done; it becomes done exactly once, from either side (the scheduler finishing it, or its client leaving the queue).
/// </summary>
public sealed class GenerationJob
{
    private const int Waiting = 0, Running = 1, Done = 2;
    private readonly Channel<string> _text = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly TaskCompletionSource<GenerationResult> _result = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly StopStrings _stops;
    private int _state = Waiting;

    /// <param name="maxTokens">tokens to generate at most (already capped by the context)</param>
    /// <param name="cancel">the client's request: once cancelled the job leaves the queue, or its slot, at the next step</param>
    public GenerationJob(int[] prompt, SamplingSettings sampling, int maxTokens, IReadOnlyList<string> stop, CancellationToken cancel)
    {
        if (maxTokens < 1) throw new ArgumentOutOfRangeException(nameof(maxTokens), $"max_tokens {maxTokens} must be at least 1");
        Prompt = prompt;
        Sampling = sampling;
        MaxTokens = maxTokens;
        Cancel = cancel;
        _stops = new StopStrings(stop);
    }

    public int[] Prompt { get; }
    public SamplingSettings Sampling { get; }
    public int MaxTokens { get; }
    public CancellationToken Cancel { get; }

    /// <summary>The completion's text as it is generated (stop strings and what follows them left out).</summary>
    public ChannelReader<string> Text => _text.Reader;

    /// <summary>Ends when the job does: with the token counts, or with the engine's exception.</summary>
    public Task<GenerationResult> Result => _result.Task;

    /// <summary>Tokens generated so far.</summary>
    public int CompletionTokens { get; private set; }

    internal IEngineSequence? Sequence { get; set; }

    /// <summary>The scheduler's callback on <see cref="Cancel"/>, removed when the job ends: a server may reuse a request's
    /// cancellation source for the next request on the same connection, and the callback must not keep this job alive.</summary>
    internal CancellationTokenRegistration Registration { get; set; }

    /// <summary>Waiting to running; false when the job was already done (its client left the queue).</summary>
    internal bool TryStart() => Interlocked.CompareExchange(ref _state, Running, Waiting) == Waiting;

    /// <summary>Waiting to done, for a client that leaves before the job started; false once it runs.</summary>
    internal bool TryWithdraw()
    {
        if (Interlocked.CompareExchange(ref _state, Done, Waiting) != Waiting) return false;
        Complete(FinishReason.Cancelled);
        return true;
    }

    /// <summary>Takes one step's output (scheduler thread); returns the finish reason once the job is over, else null.</summary>
    internal FinishReason? Accept(TokenStep step)
    {
        if (step.EndOfText) return FinishReason.Stop;
        CompletionTokens++;
        string safe = _stops.Push(step.Text);
        if (safe.Length > 0) _text.Writer.TryWrite(safe);
        if (_stops.Stopped) return FinishReason.Stop;
        return CompletionTokens >= MaxTokens ? FinishReason.Length : null;
    }

    /// <summary>Ends the job: held-back text is sent (it was never a stop string), the slot is freed, the result published.</summary>
    internal void Complete(FinishReason reason, Exception? error = null)
    {
        Volatile.Write(ref _state, Done);
        Registration.Unregister(); // never blocks, also from inside the callback itself
        Sequence?.Dispose();
        Sequence = null;
        string rest = _stops.Flush();
        if (rest.Length > 0 && error is null && reason != FinishReason.Cancelled) _text.Writer.TryWrite(rest);
        _text.Writer.TryComplete(error);
        if (error is null) _result.TrySetResult(new GenerationResult(reason, Prompt.Length, CompletionTokens));
        else _result.TrySetException(error);
    }
}
