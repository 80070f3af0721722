using ManagedTensor.Apps.Serve;

namespace ManagedTensor.Tests.Serve;

/// <summary>
/// An engine whose behaviour a test decides: one token per character (so lengths are easy to reason about), a reply
/// given as text, or endless when <c>reply</c> is null, and a record of what the scheduler asked (starts, frees, the
/// size of each step). Each step sleeps <c>stepMilliseconds</c>, so an endless reply does not spin a core and a browser
/// can watch a reply arrive.
/// </summary>
public sealed class ScriptedEngine(int maxSequences = 1, int contextLength = 4096, string? reply = "hello world", int stepMilliseconds = 1) : ICompletionEngine
{
    private int _live, _started, _freed;
    private readonly List<int> _stepSizes = [];

    public string ModelId => "scripted";
    public int ContextLength => contextLength;
    public int MaxSequences => maxSequences;
    public IReadOnlyCollection<string> ChatRoles { get; } = ["system", "user", "assistant"];

    public int Started => Volatile.Read(ref _started);
    public int Freed => Volatile.Read(ref _freed);

    /// <summary>How many sequences each step advanced together.</summary>
    public int[] StepSizes { get { lock (_stepSizes) return [.. _stepSizes]; } }

    public int[] TokenizeChat(IReadOnlyList<ChatTurn> messages) => TokenizeText(string.Concat(messages.Select(m => m.Content)));
    public int[] TokenizeText(string prompt) => [1, .. prompt.Select(c => (int)c)]; // BOS, then one token per character

    public IEngineSequence Start(int[] prompt, SamplingSettings sampling)
    {
        if (Interlocked.Increment(ref _live) > maxSequences) throw new InvalidOperationException("more sequences than slots");
        Interlocked.Increment(ref _started);
        return new Sequence(this, prompt.Length);
    }

    public void Step(IReadOnlyList<IEngineSequence> sequences, Action<int, TokenStep> produced)
    {
        lock (_stepSizes) _stepSizes.Add(sequences.Count);
        Thread.Sleep(stepMilliseconds);
        for (int i = 0; i < sequences.Count; i++)
        {
            var s = (Sequence)sequences[i];
            int k = s.Generated++;
            produced(i, reply is null ? new TokenStep("a", false) : k < reply.Length ? new TokenStep(reply[k].ToString(), false) : new TokenStep("", true));
        }
    }

    public void Dispose() { }

    private sealed class Sequence(ScriptedEngine owner, int promptLength) : IEngineSequence
    {
        private bool _disposed;
        public int Generated;
        public int Length => promptLength + Generated;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            Interlocked.Decrement(ref owner._live);
            Interlocked.Increment(ref owner._freed);
        }
    }
}
