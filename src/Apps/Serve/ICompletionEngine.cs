namespace ManagedTensor.Apps.Serve;

/// <summary>
/// Everything the server needs from a language model, and nothing more: the one seam between `mt serve` and the model
/// layer. The HTTP side renders, tokenizes, checks lengths and queues; the scheduler's thread alone starts sequences and
/// steps them. One implementation over the model code (<see cref="LlamaCompletionEngine"/>), and scripted ones in the
/// tests. When the model layer changes, only that implementation changes.
/// </summary>
public interface ICompletionEngine : IDisposable
{
    /// <summary>The model's name in responses and in GET /v1/models (the checkpoint's file or folder name).</summary>
    string ModelId { get; }

    /// <summary>Positions one sequence may fill: prompt and completion together.</summary>
    int ContextLength { get; }

    /// <summary>Sequences that can be generated at once, each holding its own KV cache (the scheduler's slots).</summary>
    int MaxSequences { get; }

    /// <summary>The message roles the chat template writes ("system", "user", "assistant").</summary>
    IReadOnlyCollection<string> ChatRoles { get; }

    /// <summary>The prompt tokens of a conversation rendered with the model's chat template, up to the assistant's turn.
    /// Safe to call from any thread.</summary>
    int[] TokenizeChat(IReadOnlyList<ChatTurn> messages);

    /// <summary>The prompt tokens of plain text (BOS where the tokenizer adds one). Safe to call from any thread.</summary>
    int[] TokenizeText(string prompt);

    /// <summary>Takes a free slot and sets a sequence up to run <paramref name="prompt"/>; nothing runs until its first step.
    /// Called only from the scheduler's thread, and never with more than <see cref="MaxSequences"/> sequences alive.</summary>
    IEngineSequence Start(int[] prompt, SamplingSettings sampling);

    /// <summary>
    /// Advances every sequence by one token: the first step runs the prompt (prefill), later ones the token sampled last.
    /// <paramref name="produced"/>(i, step) receives what sequence i produced, as soon as it is known, so that with
    /// sequences run one after another each client gets its token without waiting for the rest of the step. This is where
    /// a batched forward pass (one weight read for all sequences) belongs. Scheduler thread only.
    /// </summary>
    void Step(IReadOnlyList<IEngineSequence> sequences, Action<int, TokenStep> produced);
}

/// <summary>One sequence in flight. Disposing it frees its slot (its KV cache goes back to the pool).</summary>
public interface IEngineSequence : IDisposable
{
    /// <summary>Tokens of the sequence so far: the prompt and every token generated.</summary>
    int Length { get; }
}

/// <summary>What one step of a sequence produced: the new token's text (empty while a UTF-8 character is incomplete),
/// or <see cref="EndOfText"/> when the model sampled an end-of-generation token (which is not part of the completion).</summary>
public readonly record struct TokenStep(string Text, bool EndOfText);

/// <summary>A message of a chat request, its role already checked against <see cref="ICompletionEngine.ChatRoles"/>.</summary>
public readonly record struct ChatTurn(string Role, string Content);

/// <summary>How tokens are drawn: temperature 0 is greedy; <paramref name="Seed"/> makes a draw repeatable.</summary>
public readonly record struct SamplingSettings(float Temperature, float TopP, ulong Seed);
