using System.Text.Json;
using ManagedTensor.Apps.Serve;

using Xunit;

namespace ManagedTensor.Tests.Serve;

/// <summary>The bounded queue, 429s, clients that leave, and token-by-token interleaving of running requests.</summary>
public class QueueTests
{
    private const string Endless = """{"messages":[{"role":"user","content":"go"}],"stream":true}""";

    /// <summary>Reads events until one carries content: the request is then running in a slot.</summary>
    private static async Task<IAsyncEnumerator<string>> UntilContent(HttpResponseMessage response, CancellationToken ct)
    {
        var events = ServeHttp.Events(response, ct).GetAsyncEnumerator(ct);
        while (await events.MoveNextAsync())
            if (JsonDocument.Parse(events.Current).RootElement.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var c) && c.GetString() != "")
                return events;
        throw new InvalidOperationException("the stream ended before any content");
    }

    [Fact]
    public async Task Past_the_slots_and_the_queue_a_request_gets_429_with_retry_after()
    {
        var engine = new ScriptedEngine(maxSequences: 1, reply: null);
        await using var server = new ServeTestServer(engine, new ServeOptions(MaxQueued: 1));
        using var cts = new CancellationTokenSource();
        using var running = await server.Client.PostStreaming("/v1/chat/completions", Endless, cts.Token);
        await using var runningEvents = await UntilContent(running, cts.Token);
        using var waiting = await server.Client.PostStreaming("/v1/chat/completions", Endless, cts.Token); // headers come once queued
        Assert.Equal(200, (int)waiting.StatusCode);
        Assert.Equal(1, server.Scheduler.Queued);

        using var refused = await server.Client.SendAsync(ServeHttp.Post("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}]}"""));
        Assert.Equal(429, (int)refused.StatusCode);
        int retry = int.Parse(refused.Headers.GetValues("Retry-After").Single(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(retry, 1, 60);
        var error = (await ServeHttp.Body(refused)).GetProperty("error");
        Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());

        cts.Cancel(); // both clients leave: the slot and the queue place come back
        await ServeHttp.Eventually(() => server.Scheduler.Running == 0 && server.Scheduler.Queued == 0, "slot and queue freed");
        Assert.Equal(engine.Started, engine.Freed);
        var (status, _) = await server.Client.PostJson("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"max_tokens":3}""");
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task A_client_that_disconnects_mid_stream_frees_its_slot_for_the_next_request()
    {
        var engine = new ScriptedEngine(maxSequences: 1, reply: null);
        await using var server = new ServeTestServer(engine, new ServeOptions(MaxQueued: 4));
        using (var cts = new CancellationTokenSource())
        {
            var first = await server.Client.PostStreaming("/v1/chat/completions", Endless, cts.Token);
            await using var events = await UntilContent(first, cts.Token);
            Assert.Equal(1, server.Scheduler.Running);
            cts.Cancel();
            first.Dispose();
        }
        await ServeHttp.Eventually(() => engine.Freed == 1, "the slot freed after the client left");
        Assert.Equal(0, server.Scheduler.Running);

        var (status, json) = await server.Client.PostJson("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"max_tokens":4}""");
        Assert.Equal(200, status);
        Assert.Equal("aaaa", json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(2, engine.Freed);
    }

    [Fact]
    public async Task A_non_streaming_client_that_gives_up_frees_its_slot_too()
    {
        var engine = new ScriptedEngine(maxSequences: 1, reply: null);
        await using var server = new ServeTestServer(engine);
        using var cts = new CancellationTokenSource();
        var pending = server.Client.SendAsync(ServeHttp.Post("/v1/completions", """{"prompt":"go"}"""), cts.Token);
        await ServeHttp.Eventually(() => server.Scheduler.Running == 1, "the request running");
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending);
        await ServeHttp.Eventually(() => engine.Freed == 1, "the slot freed after the client left");
    }

    [Fact]
    public async Task Running_requests_advance_together_one_token_per_step()
    {
        var engine = new ScriptedEngine(maxSequences: 2, reply: null);
        await using var server = new ServeTestServer(engine);
        using var cts = new CancellationTokenSource();
        using var a = await server.Client.PostStreaming("/v1/chat/completions", Endless, cts.Token);
        await using var ea = await UntilContent(a, cts.Token);
        // The second request joins while the first is still generating, instead of waiting for it to end.
        var (status, json) = await server.Client.PostJson("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"max_tokens":5}""");
        Assert.Equal(200, status);
        Assert.Equal("aaaaa", json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.True(engine.StepSizes.Count(n => n == 2) >= 5, "the two sequences were stepped together");
        cts.Cancel();
    }

    [Fact]
    public async Task Jobs_end_as_cancelled_when_the_scheduler_stops()
    {
        var engine = new ScriptedEngine(maxSequences: 1, reply: null);
        var scheduler = new GenerationScheduler(engine, maxQueued: 2);
        var running = new GenerationJob([1, 2], new SamplingSettings(1, 1, 1), 1_000_000, [], CancellationToken.None);
        var waiting = new GenerationJob([1, 2], new SamplingSettings(1, 1, 1), 10, [], CancellationToken.None);
        Assert.True(scheduler.TryAdmit(running));
        Assert.True(scheduler.TryAdmit(waiting));
        scheduler.Dispose();
        Assert.Equal(FinishReason.Cancelled, (await running.Result).Reason);
        Assert.Equal(FinishReason.Cancelled, (await waiting.Result).Reason);
        Assert.Equal(engine.Started, engine.Freed);
    }
}
