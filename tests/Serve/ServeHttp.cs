using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace ManagedTensor.Tests.Serve;

/// <summary>Requests and server-sent events as a client sees them.</summary>
public static class ServeHttp
{
    public static HttpRequestMessage Post(string path, string json, string? apiKey = null)
    {
        var r = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (apiKey is not null) r.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return r;
    }

    public static async Task<(int Status, JsonElement Body)> PostJson(this HttpClient client, string path, string json, string? apiKey = null)
    {
        using var response = await client.SendAsync(Post(path, json, apiKey));
        return ((int)response.StatusCode, await Body(response));
    }

    public static async Task<JsonElement> Body(HttpResponseMessage response)
    {
        string text = await response.Content.ReadAsStringAsync();
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>Sends a streaming request and returns once the headers are in, the body left to read as events.</summary>
    public static Task<HttpResponseMessage> PostStreaming(this HttpClient client, string path, string json, CancellationToken ct = default) =>
        client.SendAsync(Post(path, json), HttpCompletionOption.ResponseHeadersRead, ct);

    /// <summary>The payloads of "data: ..." events, in order, as they arrive; blocks between events are checked to be blank lines.</summary>
    public static async IAsyncEnumerable<string> Events(HttpResponseMessage response, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
    {
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (line.Length == 0) continue;
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) throw new InvalidDataException($"not an SSE data line: '{line}'");
            yield return line["data: ".Length..];
            string? blank = await reader.ReadLineAsync(ct);
            if (blank != "") throw new InvalidDataException($"an event must end with a blank line, got '{blank}'");
        }
    }

    public static async Task<List<string>> AllEvents(HttpResponseMessage response)
    {
        var events = new List<string>();
        await foreach (var e in Events(response)) events.Add(e);
        return events;
    }

    /// <summary>Waits for <paramref name="condition"/>, polling; the limit only guards against a hang (no timing is asserted).</summary>
    public static async Task Eventually(Func<bool> condition, string what)
    {
        for (int i = 0; i < 6000; i++)
        {
            if (condition()) return;
            await Task.Delay(10);
        }
        throw new TimeoutException($"still not true after a minute: {what}");
    }
}
