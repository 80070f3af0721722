namespace ManagedTensor.Apps.Serve;

/// <summary>How the server listens and what it accepts (the model's own settings are <see cref="LlamaEngineOptions"/>).</summary>
public sealed record ServeOptions(
    string Host = "127.0.0.1",      // loopback unless asked: a model server on every interface is open to the network
    int Port = 8080,                // 0: any free port (printed at start)
    string? ApiKey = null,          // when set, /v1/* needs "Authorization: Bearer <key>"
    long MaxRequestBytes = 1 << 20, // a chat that fills an 8k context is ~40 KB of text; 1 MiB leaves room and bounds memory
    int MaxQueued = 16);            // requests waiting for a slot; more get 429
