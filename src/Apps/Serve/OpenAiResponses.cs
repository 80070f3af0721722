using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ManagedTensor.Apps.Serve;

// The response bodies of OpenAI's API reference, field for field (snake_case on the wire). Fields this server never
// fills (logprobs, system_fingerprint, refusal) are written as null because clients read them.

public sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens)
{
    public static Usage Of(GenerationResult r) => new(r.PromptTokens, r.CompletionTokens, r.PromptTokens + r.CompletionTokens);
}

/// <summary>POST /v1/chat/completions without streaming: object "chat.completion".</summary>
public sealed record ChatCompletion(string Id, string Object, long Created, string Model, string? SystemFingerprint, ChatChoice[] Choices, Usage Usage);

public sealed record ChatChoice(int Index, AssistantMessage Message, object? Logprobs, string FinishReason);

public sealed record AssistantMessage(string Role, string Content, string? Refusal);

/// <summary>One server-sent event of a streamed chat completion: object "chat.completion.chunk". The last one, when
/// stream_options.include_usage is set, has no choices and carries the usage.</summary>
public sealed record ChatCompletionChunk(string Id, string Object, long Created, string Model, string? SystemFingerprint, ChatChunkChoice[] Choices,
                                         [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] Usage? Usage = null);

public sealed record ChatChunkChoice(int Index, ChatDelta Delta, object? Logprobs, string? FinishReason);

/// <summary>What a chunk adds to the message: the role first, then content pieces; the last chunk's delta is empty.</summary>
public sealed record ChatDelta(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content = null);

/// <summary>POST /v1/completions, whole or as one chunk of a stream: object "text_completion" either way.</summary>
public sealed record TextCompletion(string Id, string Object, long Created, string Model, string? SystemFingerprint, TextChoice[] Choices,
                                    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] Usage? Usage = null);

public sealed record TextChoice(string Text, int Index, object? Logprobs, string? FinishReason);

/// <summary>GET /v1/models.</summary>
public sealed record ModelList(string Object, ModelInfo[] Data);

public sealed record ModelInfo(string Id, string Object, long Created, string OwnedBy);

/// <summary>GET /health, with llama.cpp's slot counts (idle, processing) and the queue.</summary>
public sealed record HealthStatus(string Status, int SlotsIdle, int SlotsProcessing, int Queued, string Model);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(ChatCompletion))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(TextCompletion))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(ModelInfo))]
[JsonSerializable(typeof(HealthStatus))]
[JsonSerializable(typeof(ErrorBody))]
public sealed partial class ServeJson : JsonSerializerContext
{
    /// <summary>
    /// The serializer the server writes with: snake_case, and text as UTF-8 rather than \u escapes (the default escapes
    /// HTML-sensitive characters such as ' and &lt;, which is for JSON pasted into HTML, not for an API's replies).
    /// </summary>
    public static ServeJson Wire { get; } = new(new JsonSerializerOptions
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}
