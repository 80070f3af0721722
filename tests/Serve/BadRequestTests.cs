using System.Net;
using System.Text;
using ManagedTensor.Apps.Serve;

using Xunit;

namespace ManagedTensor.Tests.Serve;

/// <summary>Every kind of bad request gets OpenAI's error JSON with the right status and the offending field named.</summary>
public class BadRequestTests
{
    private const string Chat = "/v1/chat/completions";
    private const string User = """[{"role":"user","content":"hi"}]""";

    [Theory]
    [InlineData("{\"messages\": [", null)]                                             // malformed JSON
    [InlineData("{\"messages\": " + User + ", \"temperature\": NaN}", null)]           // NaN is not JSON
    [InlineData("[1, 2]", null)]                                                       // not an object
    [InlineData("{}", "messages")]
    [InlineData("{\"messages\": null}", "messages")]
    [InlineData("{\"messages\": \"hi\"}", "messages")]
    [InlineData("{\"messages\": []}", "messages")]
    [InlineData("{\"messages\": [\"hi\"]}", "messages[0]")]
    [InlineData("{\"messages\": [{\"content\": \"hi\"}]}", "messages[0].role")]
    [InlineData("{\"messages\": [{\"role\": 1, \"content\": \"hi\"}]}", "messages[0].role")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"tool\", \"content\": \"b\"}]}", "messages[1].role")]
    [InlineData("{\"messages\": [{\"role\": \"wizard\", \"content\": \"b\"}]}", "messages[0].role")]
    [InlineData("{\"messages\": [{\"role\": \"user\"}]}", "messages[0].content")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages[0].content")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {}}]}]}", "messages[0].content[0].type")]
    [InlineData("{\"messages\": " + User + ", \"temperature\": \"NaN\"}", "temperature")]
    [InlineData("{\"messages\": " + User + ", \"temperature\": -0.5}", "temperature")]
    [InlineData("{\"messages\": " + User + ", \"temperature\": 1e999}", "temperature")]
    [InlineData("{\"messages\": " + User + ", \"temperature\": 2.5}", "temperature")]
    [InlineData("{\"messages\": " + User + ", \"temperature\": true}", "temperature")]
    [InlineData("{\"messages\": " + User + ", \"top_p\": 1.5}", "top_p")]
    [InlineData("{\"messages\": " + User + ", \"max_tokens\": 0}", "max_tokens")]
    [InlineData("{\"messages\": " + User + ", \"max_tokens\": 2.5}", "max_tokens")]
    [InlineData("{\"messages\": " + User + ", \"max_tokens\": \"10\"}", "max_tokens")]
    [InlineData("{\"messages\": " + User + ", \"max_completion_tokens\": -1}", "max_completion_tokens")]
    [InlineData("{\"messages\": " + User + ", \"stream\": \"yes\"}", "stream")]
    [InlineData("{\"messages\": " + User + ", \"stream\": true, \"stream_options\": {\"include_usage\": 1}}", "stream_options.include_usage")]
    [InlineData("{\"messages\": " + User + ", \"stop\": 5}", "stop")]
    [InlineData("{\"messages\": " + User + ", \"stop\": [\"a\", 1]}", "stop[1]")]
    [InlineData("{\"messages\": " + User + ", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", "stop")]
    [InlineData("{\"messages\": " + User + ", \"stop\": \"\"}", "stop")]
    [InlineData("{\"messages\": " + User + ", \"seed\": \"x\"}", "seed")]
    [InlineData("{\"messages\": " + User + ", \"n\": 2}", "n")]
    [InlineData("{\"messages\": " + User + ", \"model\": 4}", "model")]
    [InlineData("{\"messages\": " + User + ", \"logprobs\": true}", "logprobs")]
    public async Task Chat_request_is_refused_with_400_naming_the_field(string body, string? param)
    {
        await using var server = new ServeTestServer(new ScriptedEngine());
        var (status, json) = await server.Client.PostJson(Chat, body);
        Assert.Equal(400, status);
        var error = json.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        if (param is null) Assert.Equal(System.Text.Json.JsonValueKind.Null, error.GetProperty("param").ValueKind);
        else
        {
            Assert.Equal(param, error.GetProperty("param").GetString());
            Assert.Contains(param, error.GetProperty("message").GetString());
        }
        Assert.Equal(0, server.Scheduler.Running + server.Scheduler.Queued);
    }

    [Theory]
    [InlineData("{}", "prompt")]
    [InlineData("{\"prompt\": 3}", "prompt")]
    [InlineData("{\"prompt\": [\"a\", \"b\"]}", "prompt")]
    [InlineData("{\"prompt\": \"a\", \"logprobs\": 2}", "logprobs")]
    [InlineData("{\"prompt\": \"a\", \"echo\": true}", "echo")]
    [InlineData("{\"prompt\": \"a\", \"temperature\": -1}", "temperature")]
    public async Task Completion_request_is_refused_with_400_naming_the_field(string body, string param)
    {
        await using var server = new ServeTestServer(new ScriptedEngine());
        var (status, json) = await server.Client.PostJson("/v1/completions", body);
        Assert.Equal(400, status);
        Assert.Equal(param, json.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task Unknown_fields_are_ignored_and_text_parts_and_developer_messages_are_read()
    {
        await using var server = new ServeTestServer(new ScriptedEngine(reply: "ok"));
        var (status, json) = await server.Client.PostJson(Chat, """
            {"model": "gpt-4o", "messages": [{"role": "developer", "content": "be brief", "name": "x"},
                                             {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
                                             {"role": "assistant", "content": null, "tool_calls": []}],
             "frequency_penalty": 0, "presence_penalty": 0, "user": "me", "response_format": {"type": "text"}, "future_field": [1, 2],
             "max_tokens": null, "stop": null, "seed": -5}
            """);
        Assert.Equal(200, status);
        Assert.Equal("ok", json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("scripted", json.GetProperty("model").GetString()); // the served model, whatever name was asked for
        Assert.Equal(1 + "be briefhi there".Length, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task An_empty_body_is_a_400_and_a_body_over_the_limit_a_413()
    {
        await using var server = new ServeTestServer(new ScriptedEngine(), new ServeOptions(MaxRequestBytes: 2048));
        var (status, _) = await server.Client.PostJson(Chat, "");
        Assert.Equal(400, status);

        string big = "{\"messages\": [{\"role\": \"user\", \"content\": \"" + new string('x', 4096) + "\"}]}";
        (status, var json) = await server.Client.PostJson(Chat, big);
        Assert.Equal(413, status);
        Assert.Equal("request_too_large", json.GetProperty("error").GetProperty("code").GetString());

        // Without a Content-Length (chunked), the limit is enforced while reading.
        var request = new HttpRequestMessage(HttpMethod.Post, Chat) { Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(big))) };
        request.Headers.TransferEncodingChunked = true;
        using var response = await server.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Fact]
    public async Task Max_tokens_beyond_the_context_is_capped_to_what_is_left()
    {
        // 16 positions; the prompt is BOS + 10 characters, so 5 tokens fit.
        await using var server = new ServeTestServer(new ScriptedEngine(contextLength: 16, reply: null));
        var (status, json) = await server.Client.PostJson("/v1/completions", """{"prompt": "abcdefghij", "max_tokens": 100}""");
        Assert.Equal(200, status);
        Assert.Equal("aaaaa", json.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal("length", json.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(16, json.GetProperty("usage").GetProperty("total_tokens").GetInt32());

        (status, json) = await server.Client.PostJson("/v1/completions", """{"prompt": "abcdefghijklmno"}""");
        Assert.Equal(400, status);
        Assert.Equal("context_length_exceeded", json.GetProperty("error").GetProperty("code").GetString());
    }
}
