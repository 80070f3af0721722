namespace ManagedTensor.Apps.Serve;

/// <summary>
/// A request the server refuses, as OpenAI reports it: an HTTP status and the body
/// {"error": {"message", "type", "param", "code"}}. <paramref name="Param"/> names the offending field (JSON path
/// style, "messages[1].role") so a client's author sees at once what to fix.
/// </summary>
public sealed class ApiError(int status, string message, string? param = null, string? code = null, string type = ApiError.InvalidRequest)
    : Exception(message)
{
    public const string InvalidRequest = "invalid_request_error";

    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;

    /// <summary>The retry delay a 429 carries in its Retry-After header.</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <summary>400 for a field of the wrong type or value.</summary>
    public static ApiError BadField(string param, string message) => new(400, $"'{param}': {message}", param);

    public ErrorBody ToBody() => new(new ErrorDetail(Message, Type, Param, Code));
}

/// <summary>The JSON body of an error.</summary>
public sealed record ErrorBody(ErrorDetail Error);

public sealed record ErrorDetail(string Message, string Type, string? Param, string? Code);
