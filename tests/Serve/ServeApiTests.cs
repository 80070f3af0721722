using System.Text.Json;
using ManagedTensor.Models.Generation;
using ManagedTensor.Tests.Llama;

using Xunit;

namespace ManagedTensor.Tests.Serve;

/// <summary>The endpoints end to end on the real stories260K, through the in-process test server.</summary>
public class ServeApiTests
{
    private const string Chat = "/v1/chat/completions";

    [Fact]
    public async Task Completion_at_temperature_0_is_the_greedy_text_of_the_model_code()
    {
        await using var server = new ServeTestServer(ServeTestServer.Stories260K());
        var (status, body) = await server.Client.PostJson("/v1/completions", """{"model":"x","prompt":"Once upon a time","max_tokens":40,"temperature":0}""");
        Assert.Equal(200, status);

        var m = ModelLoader.Open(RepoPaths.Stories260K, RepoPaths.Tok512);
        var prompt = m.Tokenizer.Encode("Once upon a time", bos: true);
        var expected = TextGenerator.Generate(m.Model, m.Tokenizer, prompt, 40, new SamplerOptions(0f), m.StopTokens);

        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        Assert.Equal("stories260K", body.GetProperty("model").GetString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(expected.Text, choice.GetProperty("text").GetString());
        Assert.Equal(expected.Generated.Count == 40 ? "length" : "stop", choice.GetProperty("finish_reason").GetString());
        var usage = body.GetProperty("usage");
        Assert.Equal(prompt.Count, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(expected.Generated.Count, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(prompt.Count + expected.Generated.Count, usage.GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task Chat_completion_with_a_seed_repeats_and_streams_the_same_text()
    {
        await using var server = new ServeTestServer(ServeTestServer.Stories260K());
        const string request = """{"messages":[{"role":"system","content":""},{"role":"user","content":"Once upon a time"}],"temperature":0.9,"top_p":0.95,"seed":7,"max_tokens":30""";
        var (s1, a) = await server.Client.PostJson(Chat, request + "}");
        var (s2, b) = await server.Client.PostJson(Chat, request + "}");
        Assert.Equal(200, s1);
        Assert.Equal(200, s2);
        string text = a.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.NotEmpty(text);
        Assert.Equal(text, b.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("assistant", a.GetProperty("choices")[0].GetProperty("message").GetProperty("role").GetString());
        Assert.StartsWith("chatcmpl-", a.GetProperty("id").GetString());

        using var response = await server.Client.PostStreaming(Chat, request + ""","stream":true,"stream_options":{"include_usage":true}}""");
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var events = await ServeHttp.AllEvents(response);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        var usageChunk = chunks[^1];
        Assert.Equal(0, usageChunk.GetProperty("choices").GetArrayLength());
        var closing = chunks[^2].GetProperty("choices")[0];
        Assert.Equal(a.GetProperty("choices")[0].GetProperty("finish_reason").GetString(), closing.GetProperty("finish_reason").GetString());
        Assert.Empty(closing.GetProperty("delta").EnumerateObject());
        string streamed = string.Concat(chunks.SelectMany(c => c.GetProperty("choices").EnumerateArray())
            .Select(ch => ch.GetProperty("delta").TryGetProperty("content", out var t) ? t.GetString() : ""));
        Assert.Equal(text, streamed);
        Assert.Equal(a.GetProperty("usage").GetRawText(), usageChunk.GetProperty("usage").GetRawText());
    }

    [Fact]
    public async Task A_stop_string_ends_the_completion_before_it()
    {
        await using var server = new ServeTestServer(ServeTestServer.Stories260K());
        var (_, free) = await server.Client.PostJson("/v1/completions", """{"prompt":"Once upon a time","max_tokens":60,"temperature":0}""");
        string full = free.GetProperty("choices")[0].GetProperty("text").GetString()!;
        int dot = full.IndexOf('.');
        Assert.True(dot > 0, $"the greedy text should hold a full stop to test with: '{full}'");

        var (status, body) = await server.Client.PostJson("/v1/completions", """{"prompt":"Once upon a time","max_tokens":60,"temperature":0,"stop":[".","zzz"]}""");
        Assert.Equal(200, status);
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(full[..dot], choice.GetProperty("text").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());

        using var response = await server.Client.PostStreaming("/v1/completions", """{"prompt":"Once upon a time","max_tokens":60,"temperature":0,"stop":".","stream":true}""");
        var chunks = (await ServeHttp.AllEvents(response))[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.Equal(full[..dot], string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString())));
        Assert.Equal("stop", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task A_prompt_longer_than_the_context_is_a_400_that_says_so()
    {
        await using var server = new ServeTestServer(ServeTestServer.Stories260K(context: 16));
        string longText = string.Join(" ", Enumerable.Repeat("Once upon a time there was a cat.", 10));
        var (status, body) = await server.Client.PostJson(Chat, JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = longText } } }));
        Assert.Equal(400, status);
        var error = body.GetProperty("error");
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
        Assert.Equal("messages", error.GetProperty("param").GetString());
        Assert.Contains("maximum context length is 16 tokens", error.GetProperty("message").GetString());

        (status, body) = await server.Client.PostJson("/v1/completions", JsonSerializer.Serialize(new { prompt = longText }));
        Assert.Equal(400, status);
        Assert.Equal("prompt", body.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task Models_health_and_the_page_are_served()
    {
        await using var server = new ServeTestServer(ServeTestServer.Stories260K());
        var models = await ServeHttp.Body(await server.Client.GetAsync("/v1/models"));
        Assert.Equal("list", models.GetProperty("object").GetString());
        Assert.Equal("stories260K", models.GetProperty("data")[0].GetProperty("id").GetString());
        Assert.Equal("model", models.GetProperty("data")[0].GetProperty("object").GetString());
        Assert.Equal(200, (int)(await server.Client.GetAsync("/v1/models/stories260K")).StatusCode);
        var missing = await server.Client.GetAsync("/v1/models/gpt-4");
        Assert.Equal(404, (int)missing.StatusCode);
        Assert.Equal("model_not_found", (await ServeHttp.Body(missing)).GetProperty("error").GetProperty("code").GetString());

        var health = await ServeHttp.Body(await server.Client.GetAsync("/health"));
        Assert.Equal("ok", health.GetProperty("status").GetString());
        Assert.Equal(2, health.GetProperty("slots_idle").GetInt32());

        var page = await server.Client.GetAsync("/");
        Assert.Equal("text/html", page.Content.Headers.ContentType!.MediaType);
        string html = await page.Content.ReadAsStringAsync();
        Assert.Contains("id=\"prompt\"", html);
        Assert.DoesNotContain("http://", html.Replace("http://www.w3.org", "")); // nothing loaded from elsewhere
        Assert.DoesNotContain("https://", html);
        Assert.Contains("default-src 'none'", page.Headers.GetValues("Content-Security-Policy").Single());

        var unknown = await server.Client.GetAsync("/v1/embeddings");
        Assert.Equal(404, (int)unknown.StatusCode);
        Assert.Equal("invalid_request_error", (await ServeHttp.Body(unknown)).GetProperty("error").GetProperty("type").GetString());
    }
}
