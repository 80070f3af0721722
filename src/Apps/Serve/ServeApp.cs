using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace ManagedTensor.Apps.Serve;

/// <summary>
/// The HTTP application of `mt serve` on ASP.NET Core's minimal APIs: OpenAI's endpoints, /health, and the chat page at
/// "/". Built over any <see cref="ICompletionEngine"/>; the tests swap Kestrel for the in-process test server through
/// <c>configure</c>.
/// </summary>
public static class ServeApp
{
    public static WebApplication Build(ICompletionEngine engine, ServeOptions options, TextWriter log, Action<WebApplicationBuilder>? configure = null)
    {
        var address = ParseHost(options.Host);
        if (options.Port is < 0 or > 65535) throw new ArgumentOutOfRangeException(nameof(options), $"--port {options.Port}: expected 0 to 65535");
        if (options.MaxRequestBytes < 1024) throw new ArgumentOutOfRangeException(nameof(options), $"--max-request-bytes {options.MaxRequestBytes}: at least 1024");
        if (options.ApiKey is "") throw new ArgumentException("--api-key: the key must not be empty", nameof(options));
        log = TextWriter.Synchronized(log); // request lines come from many threads

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders(); // the server prints its own lines: one per request, errors in full
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = options.MaxRequestBytes;
            k.Listen(address, options.Port);
        });
        builder.Services.AddSingleton(_ => new GenerationScheduler(engine, options.MaxQueued)); // disposed with the app: its thread ends
        configure?.Invoke(builder);
        var app = builder.Build();

        var scheduler = app.Services.GetRequiredService<GenerationScheduler>();
        var endpoints = new CompletionEndpoints(engine, scheduler, options, log);
        app.Use((ctx, next) => Errors(ctx, next, log));
        if (options.ApiKey is { } key) app.Use((ctx, next) => RequireKey(ctx, next, key));

        app.MapPost("/v1/chat/completions", endpoints.ChatCompletions);
        app.MapPost("/v1/completions", endpoints.Completions);
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var model = new ModelInfo(engine.ModelId, "model", created, "managedtensor");
        app.MapGet("/v1/models", ctx => CompletionEndpoints.WriteJson(ctx.Response, new ModelList("list", [model]), ServeJson.Wire.ModelList));
        app.MapGet("/v1/models/{id}", (HttpContext ctx, string id) => id == engine.ModelId
            ? CompletionEndpoints.WriteJson(ctx.Response, model, ServeJson.Wire.ModelInfo)
            : throw new ApiError(404, $"The model '{id}' does not exist: this server serves '{engine.ModelId}'", "model", "model_not_found"));
        app.Map("/v1/{**rest}", (HttpContext ctx) => throw new ApiError(404, $"Unknown endpoint: {ctx.Request.Method} {ctx.Request.Path}"));
        // The model loads before the server listens, so a server that answers is ready (llama.cpp says 503 while loading).
        app.MapGet("/health", ctx => CompletionEndpoints.WriteJson(ctx.Response,
            new HealthStatus("ok", scheduler.Slots - scheduler.Running, scheduler.Running, scheduler.Queued, engine.ModelId), ServeJson.Wire.HealthStatus));
        app.MapGet("/", ChatPage.Write);
        return app;
    }

    /// <summary>The address to bind: an IP address, or "localhost" for loopback.</summary>
    private static IPAddress ParseHost(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) ? IPAddress.Loopback
        : IPAddress.TryParse(host, out var a) ? a
        : throw new ArgumentException($"--host {host}: expected an IP address to bind (127.0.0.1, 0.0.0.0, ::1) or localhost");

    /// <summary>Refusals (<see cref="ApiError"/>) and failures as OpenAI's error JSON; a client that left gets nothing.</summary>
    private static async Task Errors(HttpContext ctx, RequestDelegate next, TextWriter log)
    {
        try
        {
            await next(ctx);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
        }
        catch (Exception e) when (!ctx.Response.HasStarted)
        {
            var error = e as ApiError;
            if (error is null)
            {
                log.WriteLine($"error: {ctx.Request.Method} {ctx.Request.Path}: {e}");
                error = new ApiError(500, $"the server failed: {e.Message}", type: "server_error");
            }
            if (error.RetryAfterSeconds is int s) ctx.Response.Headers.RetryAfter = s.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await CompletionEndpoints.WriteJson(ctx.Response, error.ToBody(), ServeJson.Wire.ErrorBody, error.Status);
        }
    }

    /// <summary>With --api-key, every /v1 request needs "Authorization: Bearer KEY" (compared in constant time); the page and /health stay open.</summary>
    private static Task RequireKey(HttpContext ctx, RequestDelegate next, string key)
    {
        if (!ctx.Request.Path.StartsWithSegments("/v1")) return next(ctx);
        string header = ctx.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            throw new ApiError(401, "You didn't provide an API key: send it as 'Authorization: Bearer KEY' (the server runs with --api-key)", code: "invalid_api_key");
        var given = Encoding.UTF8.GetBytes(header["Bearer ".Length..].Trim());
        if (!CryptographicOperations.FixedTimeEquals(given, Encoding.UTF8.GetBytes(key)))
            throw new ApiError(401, "Incorrect API key provided", code: "invalid_api_key");
        return next(ctx);
    }
}
