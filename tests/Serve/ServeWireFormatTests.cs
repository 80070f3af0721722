using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using ManagedTensor.Apps.Serve;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Serve;

/// <summary>
/// The official client's requests (recorded from the `openai` library) replayed against the server, and the answers held
/// to the shapes of OpenAI's API reference (tests/fixtures/openai/README.md says where each fixture comes from).
/// </summary>
public class ServeWireFormatTests
{
    private static string Fixture(params string[] parts) => RepoPaths.Of(["tests", "fixtures", "openai", .. parts]);

    /// <summary>Documented fields the reference marks optional, so a server may leave them out.</summary>
    private static readonly HashSet<string> Optional =
        ["service_tier", "usage.prompt_tokens_details", "usage.completion_tokens_details", "choices[].message.annotations"];

    /// <summary>Documented as nullable though the examples show a value.</summary>
    private static readonly HashSet<string> Nullable = ["system_fingerprint", "error.param", "error.code"];

    /// <summary>Every field of <paramref name="ours"/> is in <paramref name="reference"/> with a compatible JSON type, and every
    /// field of the reference is in ours unless optional. Arrays: each of our elements against the reference's first.</summary>
    private static void AssertShape(JsonElement reference, JsonElement ours, string path = "")
    {
        string at = path.Length == 0 ? "(root)" : path;
        if (ours.ValueKind == JsonValueKind.Null)
        {
            Assert.True(reference.ValueKind == JsonValueKind.Null || Nullable.Contains(path), $"{at}: null where the reference has {reference.ValueKind}");
            return;
        }
        if (reference.ValueKind == JsonValueKind.Null) return; // a nullable field the example leaves null; ours has a value
        static JsonValueKind Kind(JsonValueKind k) => k == JsonValueKind.False ? JsonValueKind.True : k;
        Assert.True(Kind(reference.ValueKind) == Kind(ours.ValueKind), $"{at}: {ours.ValueKind} where the reference has {reference.ValueKind}");
        string Child(string name) => path.Length == 0 ? name : path + "." + name;
        if (ours.ValueKind == JsonValueKind.Object)
        {
            foreach (var p in ours.EnumerateObject())
            {
                Assert.True(reference.TryGetProperty(p.Name, out var r), $"{Child(p.Name)} is not a field of the API reference");
                AssertShape(r, p.Value, Child(p.Name));
            }
            foreach (var p in reference.EnumerateObject())
                Assert.True(ours.TryGetProperty(p.Name, out _) || Optional.Contains(Child(p.Name)), $"{Child(p.Name)} is missing");
        }
        else if (ours.ValueKind == JsonValueKind.Array && reference.GetArrayLength() > 0)
        {
            foreach (var e in ours.EnumerateArray()) AssertShape(reference[0], e, path + "[]");
        }
    }

    private static JsonElement Reference(string name) => JsonDocument.Parse(File.ReadAllText(Fixture("reference", name))).RootElement;

    private static List<string> ReferenceEvents(string name) =>
        File.ReadAllText(Fixture("reference", name)).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => e.Trim()).Where(e => e.Length > 0).Select(e => e["data: ".Length..]).ToList();

    /// <summary>A recorded request as the client sent it: method, path, headers and body.</summary>
    private static HttpRequestMessage Recorded(string name)
    {
        var record = JsonDocument.Parse(File.ReadAllText(Fixture("client_requests", name + ".json"))).RootElement;
        var request = new HttpRequestMessage(new HttpMethod(record.GetProperty("method").GetString()!), record.GetProperty("path").GetString());
        var headers = record.GetProperty("headers");
        if (record.GetProperty("body").ValueKind != JsonValueKind.Null)
            request.Content = new StringContent(record.GetProperty("body").GetRawText(), Encoding.UTF8, headers.GetProperty("content-type").GetString()!);
        request.Headers.Accept.ParseAdd(headers.GetProperty("accept").GetString());
        request.Headers.Authorization = AuthenticationHeaderValue.Parse(headers.GetProperty("authorization").GetString()!);
        return request;
    }

    private static ServeTestServer Server() => new(ServeTestServer.Stories260K(), new ServeOptions(ApiKey: "sk-test"));

    [Theory]
    [InlineData("chat", "chat_completion.json")]
    [InlineData("chat_parts", "chat_completion.json")]
    [InlineData("completion", "completion.json")]
    [InlineData("models", "models.json")]
    public async Task The_clients_request_gets_a_response_shaped_as_the_reference(string request, string reference)
    {
        await using var server = Server();
        using var response = await server.Client.SendAsync(Recorded(request));
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        AssertShape(Reference(reference), await ServeHttp.Body(response));
    }

    [Fact]
    public async Task The_clients_chat_stream_is_answered_with_the_references_chunks()
    {
        await using var server = Server();
        using var response = await server.Client.SendAsync(Recorded("chat_stream"), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var events = await ServeHttp.AllEvents(response);
        var reference = ReferenceEvents("chat_completion_stream.txt");
        Assert.Equal("[DONE]", reference[^1]);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        var (opening, content, closing, usage) = (Parse(reference[0]), Parse(reference[1]), Parse(reference[2]), Parse(reference[3]));
        AssertShape(opening, chunks[0]);
        Assert.Equal("", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString());
        AssertShape(usage, chunks[^1]);
        AssertShape(closing, chunks[^2]);
        Assert.NotEqual(JsonValueKind.Null, chunks[^2].GetProperty("choices")[0].GetProperty("finish_reason").ValueKind);
        foreach (var c in chunks[1..^2])
        {
            AssertShape(content, c);
            Assert.Equal(JsonValueKind.Null, c.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind);
        }
    }

    [Fact]
    public async Task The_clients_completion_stream_is_answered_with_the_references_chunks()
    {
        await using var server = Server();
        using var response = await server.Client.SendAsync(Recorded("completion_stream"), HttpCompletionOption.ResponseHeadersRead);
        var events = await ServeHttp.AllEvents(response);
        var reference = ReferenceEvents("completion_stream.txt");
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(Parse).ToList();
        AssertShape(Parse(reference[^2]), chunks[^1]);
        Assert.Equal(JsonValueKind.String, chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").ValueKind);
        foreach (var c in chunks[..^1]) AssertShape(Parse(reference[0]), c);
    }

    [Fact]
    public async Task The_clients_bad_request_gets_the_references_error_object()
    {
        await using var server = Server();
        using var response = await server.Client.SendAsync(Recorded("bad_temperature"));
        Assert.Equal(400, (int)response.StatusCode);
        var body = await ServeHttp.Body(response);
        AssertShape(Reference("error.json"), body);
        Assert.Equal("temperature", body.GetProperty("error").GetProperty("param").GetString());

        var unauthorized = Recorded("models");
        unauthorized.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "sk-wrong");
        using var refused = await server.Client.SendAsync(unauthorized);
        Assert.Equal(401, (int)refused.StatusCode);
        AssertShape(Reference("error.json"), await ServeHttp.Body(refused));
    }

    private static JsonElement Parse(string json) => JsonDocument.Parse(json).RootElement;
}
