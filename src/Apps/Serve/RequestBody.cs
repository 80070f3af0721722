using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace ManagedTensor.Apps.Serve;

/// <summary>
/// Reads a request body as JSON with a size limit. The limit is checked here, not only by Kestrel, so that it holds on
/// every server (the test server has none) and so that the refusal is OpenAI's error JSON rather than an empty 413.
/// </summary>
public static class RequestBody
{
    public static async Task<JsonDocument> ReadJsonAsync(HttpRequest request, long maxBytes, CancellationToken ct)
    {
        if (request.ContentLength > maxBytes) throw TooLarge(maxBytes);
        var buffer = new ArrayBufferWriter<byte>();
        try
        {
            while (true)
            {
                var span = buffer.GetMemory(16384);
                int n = await request.Body.ReadAsync(span, ct);
                if (n == 0) break;
                buffer.Advance(n);
                if (buffer.WrittenCount > maxBytes) throw TooLarge(maxBytes);
            }
        }
        catch (BadHttpRequestException e) // Kestrel's own limit, or a body cut short
        {
            throw e.StatusCode == StatusCodes.Status413PayloadTooLarge ? TooLarge(maxBytes) : new ApiError(e.StatusCode, $"the request body could not be read: {e.Message}");
        }
        if (buffer.WrittenCount == 0) throw new ApiError(400, "the request body is empty: expected a JSON object");
        try
        {
            return JsonDocument.Parse(buffer.WrittenMemory, new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw new ApiError(400, $"the request body is not valid JSON: {e.Message}");
        }
    }

    private static ApiError TooLarge(long maxBytes) =>
        new(413, $"the request body is larger than {maxBytes} bytes (mt serve --max-request-bytes)", code: "request_too_large");
}
