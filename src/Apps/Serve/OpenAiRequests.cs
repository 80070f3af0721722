using System.Text.Json;

namespace ManagedTensor.Apps.Serve;

/// <summary>The fields of a completion request that decide how it is generated (chat and text completions alike).</summary>
public sealed record GenerationParameters(
    float Temperature,
    float TopP,
    ulong? Seed,
    int? MaxTokens,               // null: as many as the context leaves
    IReadOnlyList<string> Stop,
    bool Stream,
    bool IncludeUsage);           // stream_options.include_usage: a last chunk with the token counts

public sealed record ChatCompletionRequest(IReadOnlyList<ChatTurn> Messages, GenerationParameters Parameters);

public sealed record TextCompletionRequest(string Prompt, GenerationParameters Parameters);

/// <summary>
/// Reads OpenAI's request bodies from JSON, field by field: each field has the type and range OpenAI's API reference
/// gives it, a wrong one is a 400 that names it, and fields this server does not know are ignored (clients send many).
/// Fields it knows but cannot honour (n > 1, logprobs) are refused rather than silently dropped.
/// </summary>
public static class OpenAiRequests
{
    /// <summary>OpenAI's newer name for the system role; the chat templates write it as "system".</summary>
    private const string DeveloperRole = "developer";

    public static ChatCompletionRequest ParseChat(JsonElement body, IReadOnlyCollection<string> roles)
    {
        RequireObject(body);
        if (!body.TryGetProperty("messages", out var messages) || messages.ValueKind == JsonValueKind.Null)
            throw new ApiError(400, "'messages' is required: a list of {role, content} objects", "messages");
        if (messages.ValueKind != JsonValueKind.Array) throw ApiError.BadField("messages", $"expected an array of messages, got {Kind(messages)}");
        if (messages.GetArrayLength() == 0) throw ApiError.BadField("messages", "at least one message is required");
        var turns = new List<ChatTurn>();
        int i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw ApiError.BadField(at, $"expected a {{role, content}} object, got {Kind(m)}");
            string role = String(m, "role", at + ".role") ?? throw new ApiError(400, $"'{at}.role' is required", at + ".role");
            if (role == DeveloperRole) role = "system";
            if (!roles.Contains(role))
                throw ApiError.BadField(at + ".role", $"'{role}' is not a role this model's chat template writes (it knows {string.Join(", ", roles)}, and developer as system)");
            turns.Add(new ChatTurn(role, Content(m, at, role)));
        }
        if (body.TryGetProperty("logprobs", out var lp) && lp.ValueKind == JsonValueKind.True)
            throw ApiError.BadField("logprobs", "log probabilities are not supported by this server");
        return new ChatCompletionRequest(turns, Parameters(body));
    }

    public static TextCompletionRequest ParseCompletion(JsonElement body)
    {
        RequireObject(body);
        if (!body.TryGetProperty("prompt", out var p) || p.ValueKind == JsonValueKind.Null)
            throw new ApiError(400, "'prompt' is required: the text to continue", "prompt");
        string prompt = p.ValueKind switch
        {
            JsonValueKind.String => p.GetString()!,
            JsonValueKind.Array when p.GetArrayLength() == 1 && p[0].ValueKind == JsonValueKind.String => p[0].GetString()!,
            JsonValueKind.Array => throw ApiError.BadField("prompt", "only one prompt per request: a string, or an array holding one string"),
            _ => throw ApiError.BadField("prompt", $"expected a string, got {Kind(p)}"),
        };
        if (Integer(body, "logprobs", 0, 5) is > 0) throw ApiError.BadField("logprobs", "log probabilities are not supported by this server");
        if (Bool(body, "echo") == true) throw ApiError.BadField("echo", "echoing the prompt is not supported by this server");
        return new TextCompletionRequest(prompt, Parameters(body));
    }

    /// <summary>The sampling and stopping fields shared by both endpoints, with OpenAI's defaults (temperature 1, top_p 1).</summary>
    private static GenerationParameters Parameters(JsonElement body)
    {
        String(body, "model", "model"); // any name is accepted (one model per server) but it must be a string
        float temperature = (float)(Number(body, "temperature", 0, 2) ?? 1);
        float topP = (float)(Number(body, "top_p", 0, 1) ?? 1);
        if (Integer(body, "n", 1, 128) is > 1) throw ApiError.BadField("n", "only one choice per request (n = 1) is supported");
        // max_completion_tokens is the newer name of max_tokens; when both are given it wins, as in OpenAI's API.
        long? maxTokens = Integer(body, "max_completion_tokens", 1, int.MaxValue) ?? Integer(body, "max_tokens", 1, int.MaxValue);
        long? seed = Integer(body, "seed", long.MinValue, long.MaxValue);
        bool stream = Bool(body, "stream") ?? false;
        bool includeUsage = false;
        if (body.TryGetProperty("stream_options", out var so) && so.ValueKind != JsonValueKind.Null)
        {
            if (so.ValueKind != JsonValueKind.Object) throw ApiError.BadField("stream_options", $"expected an object, got {Kind(so)}");
            includeUsage = Bool(so, "include_usage", "stream_options.include_usage") ?? false;
        }
        return new GenerationParameters(temperature, topP, seed is long s ? unchecked((ulong)s) : null, (int?)maxTokens, Stop(body), stream, includeUsage);
    }

    /// <summary>`stop`: null, a string, or up to 4 strings (OpenAI's limit), none empty.</summary>
    private static string[] Stop(JsonElement body)
    {
        if (!body.TryGetProperty("stop", out var s) || s.ValueKind == JsonValueKind.Null) return [];
        string[] stops = s.ValueKind switch
        {
            JsonValueKind.String => [s.GetString()!],
            JsonValueKind.Array => s.EnumerateArray().Select((e, i) => e.ValueKind == JsonValueKind.String ? e.GetString()!
                : throw ApiError.BadField($"stop[{i}]", $"expected a string, got {Kind(e)}")).ToArray(),
            _ => throw ApiError.BadField("stop", $"expected a string or an array of strings, got {Kind(s)}"),
        };
        if (stops.Length > 4) throw ApiError.BadField("stop", $"at most 4 stop sequences, got {stops.Length}");
        if (stops.Any(x => x.Length == 0)) throw ApiError.BadField("stop", "a stop sequence must not be empty");
        return stops;
    }

    /// <summary>A message's content: a string, or an array of text parts ({"type": "text", "text": ...}) joined.</summary>
    private static string Content(JsonElement m, string at, string role)
    {
        if (!m.TryGetProperty("content", out var c) || c.ValueKind == JsonValueKind.Null)
        {
            // An assistant turn may carry tool calls and no text; any other turn needs its text.
            if (role == "assistant") return "";
            throw new ApiError(400, $"'{at}.content' is required", at + ".content");
        }
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array) throw ApiError.BadField(at + ".content", $"expected a string or an array of content parts, got {Kind(c)}");
        var text = new System.Text.StringBuilder();
        int i = 0;
        foreach (var part in c.EnumerateArray())
        {
            string pat = $"{at}.content[{i++}]";
            if (part.ValueKind != JsonValueKind.Object) throw ApiError.BadField(pat, $"expected a content part object, got {Kind(part)}");
            string type = String(part, "type", pat + ".type") ?? throw new ApiError(400, $"'{pat}.type' is required", pat + ".type");
            if (type != "text") throw ApiError.BadField(pat + ".type", $"'{type}' parts are not supported: this model reads text only");
            text.Append(String(part, "text", pat + ".text") ?? throw new ApiError(400, $"'{pat}.text' is required", pat + ".text"));
        }
        return text.ToString();
    }

    private static void RequireObject(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object) throw new ApiError(400, $"the request body must be a JSON object, got {Kind(body)}");
    }

    private static string? String(JsonElement obj, string name, string param)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw ApiError.BadField(param, $"expected a string, got {Kind(v)}");
    }

    private static bool? Bool(JsonElement obj, string name, string? param = null)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiError.BadField(param ?? name, $"expected true or false, got {Kind(v)}"),
        };
    }

    /// <summary>A number in [min, max]. JSON has no NaN or infinity, but a value beyond double's range parses as one.</summary>
    private static double? Number(JsonElement obj, string name, double min, double max)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number) throw ApiError.BadField(name, $"expected a number, got {Kind(v)}");
        if (!v.TryGetDouble(out double d) || !double.IsFinite(d)) throw ApiError.BadField(name, $"{v.GetRawText()} is not a finite number");
        if (d < min || d > max) throw ApiError.BadField(name, $"{v.GetRawText()} is outside [{min}, {max}]");
        return d;
    }

    private static long? Integer(JsonElement obj, string name, long min, long max)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number) throw ApiError.BadField(name, $"expected an integer, got {Kind(v)}");
        if (!v.TryGetInt64(out long n)) throw ApiError.BadField(name, $"{v.GetRawText()} is not an integer");
        if (n < min || n > max) throw ApiError.BadField(name, $"{n} is outside [{min}, {max}]");
        return n;
    }

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => "null",
    };
}
