using System.Buffers;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Http;

namespace ManagedTensor.Apps.Serve;

/// <summary>
/// The handlers of POST /v1/chat/completions and POST /v1/completions: parse and check the request, turn it into a
/// <see cref="GenerationJob"/>, queue it, and answer with the whole completion or a stream of server-sent events
/// ("data: {chunk}" lines ending with "data: [DONE]"), in OpenAI's formats.
/// </summary>
public sealed class CompletionEndpoints(ICompletionEngine engine, GenerationScheduler scheduler, ServeOptions options, TextWriter log)
{
    public async Task ChatCompletions(HttpContext ctx)
    {
        using var body = await RequestBody.ReadJsonAsync(ctx.Request, options.MaxRequestBytes, ctx.RequestAborted);
        var request = OpenAiRequests.ParseChat(body.RootElement, engine.ChatRoles);
        var job = Queue(ctx, engine.TokenizeChat(request.Messages), request.Parameters, "messages");
        string id = "chatcmpl-" + NewId();
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var p = request.Parameters;
        if (!p.Stream)
        {
            var (text, result) = await Collect(job, ctx.RequestAborted);
            var choice = new ChatChoice(0, new AssistantMessage("assistant", text, null), null, FinishName(result.Reason));
            await WriteJson(ctx.Response, new ChatCompletion(id, "chat.completion", created, engine.ModelId, null, [choice], Usage.Of(result)), ServeJson.Wire.ChatCompletion);
            Log(ctx, result);
            return;
        }
        ChatCompletionChunk Chunk(ChatDelta delta, string? finish) =>
            new(id, "chat.completion.chunk", created, engine.ModelId, null, [new ChatChunkChoice(0, delta, null, finish)]);
        await Stream(ctx, job, p.IncludeUsage, ServeJson.Wire.ChatCompletionChunk,
            first: Chunk(new ChatDelta("assistant", ""), null),
            piece: text => Chunk(new ChatDelta(Content: text), null),
            last: reason => Chunk(new ChatDelta(), FinishName(reason)),
            usage: u => new ChatCompletionChunk(id, "chat.completion.chunk", created, engine.ModelId, null, [], u));
    }

    public async Task Completions(HttpContext ctx)
    {
        using var body = await RequestBody.ReadJsonAsync(ctx.Request, options.MaxRequestBytes, ctx.RequestAborted);
        var request = OpenAiRequests.ParseCompletion(body.RootElement);
        var job = Queue(ctx, engine.TokenizeText(request.Prompt), request.Parameters, "prompt");
        string id = "cmpl-" + NewId();
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        TextCompletion Completion(string text, string? finish, Usage? usage = null) =>
            new(id, "text_completion", created, engine.ModelId, null, [new TextChoice(text, 0, null, finish)], usage);
        if (!request.Parameters.Stream)
        {
            var (text, result) = await Collect(job, ctx.RequestAborted);
            await WriteJson(ctx.Response, Completion(text, FinishName(result.Reason), Usage.Of(result)), ServeJson.Wire.TextCompletion);
            Log(ctx, result);
            return;
        }
        await Stream(ctx, job, request.Parameters.IncludeUsage, ServeJson.Wire.TextCompletion,
            first: null,
            piece: text => Completion(text, null),
            last: reason => Completion("", FinishName(reason)),
            usage: u => new TextCompletion(id, "text_completion", created, engine.ModelId, null, [], u));
    }

    /// <summary>
    /// The job for a prompt: refused with 400 when the prompt leaves no room in the context, its max_tokens capped to the
    /// room there is, and queued (429 with Retry-After when the queue is full).
    /// </summary>
    private GenerationJob Queue(HttpContext ctx, int[] prompt, GenerationParameters p, string promptField)
    {
        int room = engine.ContextLength - prompt.Length;
        if (room < 1)
            throw new ApiError(400, $"This model's maximum context length is {engine.ContextLength} tokens, but the {promptField} take {prompt.Length} tokens" +
                                    " and leave no room for a completion. Shorten the " + promptField + ".", promptField, "context_length_exceeded");
        var sampling = new SamplingSettings(p.Temperature, p.TopP, p.Seed ?? (ulong)Random.Shared.NextInt64());
        var job = new GenerationJob(prompt, sampling, Math.Min(p.MaxTokens ?? room, room), p.Stop, ctx.RequestAborted);
        if (!scheduler.TryAdmit(job))
            throw new ApiError(429, $"the server is busy: {scheduler.Slots} requests are being generated and {options.MaxQueued} are waiting; retry later",
                               code: "rate_limit_exceeded", type: "requests")
            { RetryAfterSeconds = scheduler.RetryAfterSeconds };
        ctx.Items[StartedKey] = Stopwatch.GetTimestamp();
        return job;
    }

    private static async Task<(string Text, GenerationResult Result)> Collect(GenerationJob job, CancellationToken ct)
    {
        var text = new StringBuilder();
        await foreach (var piece in job.Text.ReadAllAsync(ct)) text.Append(piece);
        return (text.ToString(), await job.Result);
    }

    /// <summary>
    /// Sends the job as server-sent events: an opening chunk (chat: the role), one chunk per piece of text, a closing chunk
    /// with the finish reason, the usage chunk when asked, and "data: [DONE]". A client that goes away ends the request
    /// token's life, which ends the job at the scheduler's next step.
    /// </summary>
    private async Task Stream<T>(HttpContext ctx, GenerationJob job, bool includeUsage, JsonTypeInfo<T> info,
                                 T? first, Func<string, T> piece, Func<FinishReason, T> last, Func<Usage, T> usage)
    {
        var response = ctx.Response;
        var ct = ctx.RequestAborted;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no"; // a reverse proxy in front must not hold tokens back
        try
        {
            if (first is not null) await Event(response, first, info, ct);
            else await response.Body.FlushAsync(ct); // the headers go out now: the client knows it was accepted
            await foreach (var text in job.Text.ReadAllAsync(ct)) await Event(response, piece(text), info, ct);
            var result = await job.Result;
            await Event(response, last(result.Reason), info, ct);
            if (includeUsage) await Event(response, usage(Usage.Of(result)), info, ct);
            await response.WriteAsync("data: [DONE]\n\n", ct);
            await response.Body.FlushAsync(ct);
            Log(ctx, result);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // the client left; the scheduler drops the job at its next step
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Mid-stream the status is already 200: the error goes as an event, as OpenAI sends it.
            var error = new ApiError(500, $"generation failed: {e.Message}", type: "server_error");
            log.WriteLine($"error: {ctx.Request.Path}: {e}");
            await Event(response, error.ToBody(), ServeJson.Wire.ErrorBody, CancellationToken.None);
        }
    }

    private static async Task Event<T>(HttpResponse response, T value, JsonTypeInfo<T> info, CancellationToken ct)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(value, info);
        var w = response.BodyWriter;
        w.Write("data: "u8);
        w.Write(json);
        w.Write("\n\n"u8);
        await w.FlushAsync(ct);
    }

    public static async Task WriteJson<T>(HttpResponse response, T value, JsonTypeInfo<T> info, int status = 200)
    {
        response.StatusCode = status;
        response.ContentType = "application/json";
        await response.Body.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(value, info));
    }

    private const string StartedKey = "mt.started";

    private void Log(HttpContext ctx, GenerationResult r)
    {
        double seconds = ctx.Items[StartedKey] is long t0 ? Stopwatch.GetElapsedTime(t0).TotalSeconds : 0;
        log.WriteLine($"{ctx.Request.Method} {ctx.Request.Path}: {r.PromptTokens} prompt + {r.CompletionTokens} completion tokens, " +
                      $"{FinishName(r.Reason)}, {seconds:F2} s ({r.CompletionTokens / Math.Max(seconds, 1e-9):F1} tok/s)");
    }

    private static string FinishName(FinishReason r) => r switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        _ => "cancelled",
    };

    private static string NewId() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
}
