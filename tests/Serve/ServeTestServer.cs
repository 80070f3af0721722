using ManagedTensor.Apps.Serve;
using ManagedTensor.Tests.Llama;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.TestHost;

namespace ManagedTensor.Tests.Serve;

/// <summary>
/// The server in process on ASP.NET Core's test server (requests go through the whole pipeline without a socket), over
/// a scripted engine or the real stories260K. Each instance has its own engine: an engine's slots and the model's scratch
/// buffers belong to one scheduler.
/// </summary>
public sealed class ServeTestServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    public ICompletionEngine Engine { get; }
    public HttpClient Client { get; }
    public StringWriter Log { get; } = new();

    public ServeTestServer(ICompletionEngine engine, ServeOptions? options = null)
    {
        Engine = engine;
        _app = ServeApp.Build(engine, options ?? new ServeOptions(), Log, b => b.WebHost.UseTestServer());
        _app.StartAsync().GetAwaiter().GetResult();
        Client = _app.GetTestClient();
        Client.Timeout = TimeSpan.FromMinutes(2); // a hang guard on a loaded machine, not a timing assertion
    }

    public GenerationScheduler Scheduler => (GenerationScheduler)_app.Services.GetService(typeof(GenerationScheduler))!;

    /// <summary>stories260K as `mt serve` loads it by default, with <paramref name="context"/> positions (0: the model's 512).</summary>
    public static LlamaCompletionEngine Stories260K(int context = 0, int parallel = 2) =>
        LlamaCompletionEngine.Load(new LlamaEngineOptions(RepoPaths.Stories260K, RepoPaths.Tok512, ContextLength: context, Parallel: parallel), TextWriter.Null);

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        Engine.Dispose();
    }
}
