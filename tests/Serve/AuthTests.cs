using ManagedTensor.Apps.Serve;

using Xunit;

namespace ManagedTensor.Tests.Serve;

public class AuthTests
{
    private const string Body = """{"messages":[{"role":"user","content":"hi"}]}""";

    [Fact]
    public async Task With_an_api_key_v1_needs_the_bearer_token_and_the_page_and_health_stay_open()
    {
        await using var server = new ServeTestServer(new ScriptedEngine(), new ServeOptions(ApiKey: "s3cret"));
        var (status, json) = await server.Client.PostJson("/v1/chat/completions", Body);
        Assert.Equal(401, status);
        Assert.Equal("invalid_api_key", json.GetProperty("error").GetProperty("code").GetString());

        (status, json) = await server.Client.PostJson("/v1/chat/completions", Body, apiKey: "wrong");
        Assert.Equal(401, status);
        Assert.Equal("invalid_api_key", json.GetProperty("error").GetProperty("code").GetString());

        var request = ServeHttp.Post("/v1/chat/completions", Body);
        request.Headers.TryAddWithoutValidation("Authorization", "Basic czNjcmV0"); // the key, but not as a bearer token
        Assert.Equal(401, (int)(await server.Client.SendAsync(request)).StatusCode);

        (status, _) = await server.Client.PostJson("/v1/chat/completions", Body, apiKey: "s3cret");
        Assert.Equal(200, status);
        Assert.Equal(401, (int)(await server.Client.GetAsync("/v1/models")).StatusCode);
        Assert.Equal(200, (int)(await server.Client.GetAsync("/health")).StatusCode);
        Assert.Equal(200, (int)(await server.Client.GetAsync("/")).StatusCode);
        Assert.Equal(0, ((ScriptedEngine)server.Engine).Started - 1); // the refused requests never reached the model
    }

    [Fact]
    public async Task Without_an_api_key_no_header_is_needed()
    {
        await using var server = new ServeTestServer(new ScriptedEngine());
        var (status, _) = await server.Client.PostJson("/v1/chat/completions", Body);
        Assert.Equal(200, status);
    }

    [Theory]
    [InlineData("example.com")]
    [InlineData("300.1.1.1")]
    public void A_host_that_is_not_an_address_is_refused_before_listening(string host)
    {
        var e = Assert.Throws<ArgumentException>(() => ServeApp.Build(new ScriptedEngine(), new ServeOptions(Host: host), TextWriter.Null));
        Assert.Contains("--host", e.Message);
    }
}
