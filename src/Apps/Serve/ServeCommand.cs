using System.CommandLine;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Generation;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Hosting;

namespace ManagedTensor.Apps.Serve;

/// <summary>
/// `mt serve`: an OpenAI-compatible HTTP server for one model (any that `mt generate` reads), with a chat page at "/".
/// The model loads before the server listens, so a bad path or option ends with its message and nothing is bound.
/// </summary>
public static class ServeCommand
{
    // The default model of `mt generate` (data/ travels with the executable).
    private const string DefaultModel = "data/stories260K/stories260K.bin";
    private const string DefaultTokenizer = "data/stories260K/tok512.bin";

    public static Command Create(TextWriter output)
    {
        var model = new Option<string>("--model", "-m") { Description = "any model `mt generate` reads: llama2.c .bin, GGUF, a Hugging Face directory (Llama, Mistral, GPT-2) or its config.json, llm.c's GPT-2 .bin, an `mt train gpt` out-dir", DefaultValueFactory = _ => DefaultModel };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "a tokenizer other than the model's own: llama2.c tokenizer.bin (a llama2.c model finds the one beside it), tokenizer.json, or GPT-2's vocab.json with merges.txt beside it" };
        var template = new Option<string>("--template") { Description = "chat format: auto (the checkpoint's template), or " + string.Join(", ", ChatTemplates.Names.Keys), DefaultValueFactory = _ => "auto" };
        var device = Cli.DeviceOption("cpu");
        var dtype = new Option<string>("--dtype") { Description = "a Llama's float weight matrices: as stored (auto), or converted to f32, f16 or bf16; block formats stay as stored", DefaultValueFactory = _ => "auto" };
        var context = new Option<int>("--context") { Description = $"positions per request, prompt and completion (0: the model's, at most {ChatSession.DefaultMaxContext})", DefaultValueFactory = _ => 0 };
        var parallel = new Option<int>("--parallel") { Description = "requests generated at once, each with its own KV cache over the one copy of the weights", DefaultValueFactory = _ => 4 };
        var queue = new Option<int>("--queue") { Description = "requests that may wait for a slot; beyond, 429 with Retry-After", DefaultValueFactory = _ => 16 };
        var host = new Option<string>("--host") { Description = "address to listen on; 0.0.0.0 opens the server to the network", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free one)", DefaultValueFactory = _ => 8080 };
        var apiKey = new Option<string?>("--api-key") { Description = "require 'Authorization: Bearer KEY' on /v1; without it, the MT_API_KEY environment variable, if set" };
        var maxBytes = new Option<long>("--max-request-bytes") { Description = "largest request body accepted (413 beyond)", DefaultValueFactory = _ => 1 << 20 };
        var cmd = new Command("serve", "an OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /v1/models, /health) with a chat page at /")
        {
            model, tokenizer, template, device, dtype, context, parallel, queue, host, port, apiKey, maxBytes,
        };
        cmd.SetAction(p =>
        {
            string m = p.GetValue(model)!;
            string? tok = p.GetValue(tokenizer) is { } t ? DataFiles.Find(t) : m == DefaultModel ? DataFiles.Find(DefaultTokenizer) : null;
            var engineOptions = new LlamaEngineOptions(DataFiles.Find(m), tok, p.GetValue(template)!, Cli.ParseDevice(p.GetValue(device)!),
                ParseDType(p.GetValue(dtype)!), p.GetValue(context), p.GetValue(parallel));
            var options = new ServeOptions(p.GetValue(host)!, p.GetValue(port), p.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("MT_API_KEY"),
                p.GetValue(maxBytes), p.GetValue(queue));
            return Run(engineOptions, options, output);
        });
        return cmd;
    }

    private static int Run(LlamaEngineOptions engineOptions, ServeOptions options, TextWriter output)
    {
        using var engine = LlamaCompletionEngine.Load(engineOptions, output);
        using var app = ServeApp.Build(engine, options, output);
        app.Start(); // binding errors (port in use, address not here) surface here, before the banner
        output.WriteLine($"model {engine.ModelId}: context {engine.ContextLength}, chat template {engine.TemplateName}, {engine.MaxSequences} slot(s), queue {options.MaxQueued}" +
                         (options.ApiKey is null ? "" : ", API key required"));
        foreach (var url in app.Urls) output.WriteLine($"listening on {url} (chat page at {url}/, API at {url}/v1)");
        if (options.Host is not ("127.0.0.1" or "localhost" or "::1"))
            output.WriteLine($"warning: --host {options.Host} accepts connections from other machines" + (options.ApiKey is null ? " and no --api-key is set" : ""));
        output.Flush();
        app.WaitForShutdown(); // Ctrl-C or SIGTERM
        return 0;
    }

    /// <summary>--dtype as `mt generate` reads it.</summary>
    private static DType? ParseDType(string s) => s.ToLowerInvariant() switch
    {
        "auto" => null,
        "f32" or "float32" => DType.F32,
        "f16" or "float16" => DType.F16,
        "bf16" or "bfloat16" => DType.BF16,
        _ => throw new UserErrorException($"--dtype {s}: expected auto, f32, f16 or bf16"),
    };
}
