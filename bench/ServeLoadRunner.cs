using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Tokenizers;

namespace ManagedTensor.Bench;

/// <summary>
/// A load test of `mt serve` on 127.0.0.1 only, bounded in requests and time: the server runs as a child process, N
/// clients send streaming chat requests, and each round reports requests/s, time to first token, tokens/s per client
/// (completion tokens over the whole request, as the client lives it) and in total, errors and 429s, and the server's resident memory before and after (a second round shows whether it grows).
/// Beside it, the same model's bare decode speed in this process (one sequence, no HTTP): the ceiling the server shares.
///   serve-load --mt PATH [--model FILE] [--clients 1,4,8] [--requests N] [--max-tokens T] [--time-limit S] [--parallel P] [--queue Q] [--context C]
///   make-tinyllama-gguf OUT.gguf     TinyLlama-1.1B's shape with random Q4_0 weights and a 32000-token vocabulary
/// </summary>
public static class ServeLoadRunner
{
    public static void Run(string[] args)
    {
        string Arg(string name, string fallback) => Array.IndexOf(args, name) is int i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        string mt = Arg("--mt", "src/Apps/bin/Release/net10.0/mt");
        string model = Arg("--model", "data/stories260K/stories260K.bin");
        int[] clients = Arg("--clients", "1,4,8").Split(',').Select(int.Parse).ToArray();
        int requests = int.Parse(Arg("--requests", "32"), CultureInfo.InvariantCulture);
        int maxTokens = int.Parse(Arg("--max-tokens", "64"), CultureInfo.InvariantCulture);
        var timeLimit = TimeSpan.FromSeconds(double.Parse(Arg("--time-limit", "120"), CultureInfo.InvariantCulture));
        string parallel = Arg("--parallel", "4"), queue = Arg("--queue", "16"), context = Arg("--context", "0");

        Console.WriteLine($"# mt serve load test: {model}, {requests} streaming chat requests per round (at most {timeLimit.TotalSeconds:F0} s), max_tokens {maxTokens}, --parallel {parallel} --queue {queue}");
        Console.WriteLine($"bare decode, one sequence in process (no server): {BareDecode(model, maxTokens):F1} tok/s   [load {LoadAverage()}]");

        using var server = StartServer(mt, model, parallel, queue, context, out var baseUrl);
        using var http = new HttpClient { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromMinutes(10) };
        RunRound(http, 2, 8, maxTokens, TimeSpan.FromMinutes(5)); // warm-up: the JIT's tiers, the first connections
        long before = RssBytes(server);
        Console.WriteLine("| clients | requests | req/s | TTFT p50 ms | TTFT p95 ms | tok/s per client (median) | tok/s total | errors | 429 | RSS MB before -> after | load avg |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
        foreach (int n in clients)
            for (int round = 0; round < 2; round++) // the second round at the same load shows whether memory keeps growing
            {
                var r = RunRound(http, n, requests, maxTokens, timeLimit);
                Thread.Sleep(500);
                long after = RssBytes(server);
                Console.WriteLine($"| {n} | {r.Completed} | {r.Completed / r.Seconds:F2} | {Percentile(r.Ttft, 0.5):F0} | {Percentile(r.Ttft, 0.95):F0} | " +
                                  $"{Percentile(r.ClientRates, 0.5):F1} | {r.Tokens / r.Seconds:F1} | {r.Errors} | {r.Rejected} | " +
                                  $"{before / 1048576.0:F0} -> {after / 1048576.0:F0} | {LoadAverage()} |");
            }
        server.Kill();
        server.WaitForExit();
    }

    private sealed record RoundResult(int Completed, int Errors, int Rejected, long Tokens, double Seconds, List<double> Ttft, List<double> ClientRates);

    /// <summary>Clients send requests back to back until <paramref name="requests"/> have been sent or the time is up.</summary>
    private static RoundResult RunRound(HttpClient http, int clients, int requests, int maxTokens, TimeSpan limit)
    {
        int issued = 0, completed = 0, errors = 0, rejected = 0;
        long tokens = 0;
        var ttft = new List<double>();
        var rates = new List<double>();
        var sw = Stopwatch.StartNew();
        async Task Client(int id)
        {
            while (sw.Elapsed < limit)
            {
                int n = Interlocked.Increment(ref issued);
                if (n > requests) return;
                string body = JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["messages"] = new[] { new Dictionary<string, string> { ["role"] = "user", ["content"] = $"Once upon a time, story {n}" } },
                    ["max_tokens"] = maxTokens,
                    ["temperature"] = 0.8,
                    ["seed"] = n,
                    ["stream"] = true,
                    ["stream_options"] = new Dictionary<string, bool> { ["include_usage"] = true },
                });
                long t0 = Stopwatch.GetTimestamp();
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                    using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                    if (response.StatusCode == HttpStatusCode.TooManyRequests)
                    {
                        Interlocked.Increment(ref rejected);
                        await Task.Delay(TimeSpan.FromSeconds(response.Headers.RetryAfter?.Delta?.TotalSeconds ?? 1));
                        continue;
                    }
                    response.EnsureSuccessStatusCode();
                    using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                    double first = -1;
                    int usageTokens = -1;
                    bool done = false;
                    while (await reader.ReadLineAsync() is { } line)
                    {
                        if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                        string data = line[6..];
                        if (data == "[DONE]") { done = true; break; }
                        using var doc = JsonDocument.Parse(data);
                        var root = doc.RootElement;
                        if (root.TryGetProperty("usage", out var u)) usageTokens = u.GetProperty("completion_tokens").GetInt32();
                        else if (first < 0 && root.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var c) && c.GetString() != "")
                            first = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                    }
                    if (!done || usageTokens < 0) throw new InvalidDataException("the stream ended without usage and [DONE]");
                    double total = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                    lock (ttft)
                    {
                        completed++;
                        tokens += usageTokens;
                        if (first >= 0) ttft.Add(first);
                        rates.Add(usageTokens / (total / 1000)); // as the client lives it: from sending to the last token
                    }
                }
                catch (Exception e) when (e is HttpRequestException or IOException or InvalidDataException or JsonException)
                {
                    Interlocked.Increment(ref errors);
                    Console.Error.WriteLine($"request {n}: {e.Message}");
                }
            }
        }
        Task.WaitAll(Enumerable.Range(0, clients).Select(i => Task.Run(() => Client(i))).ToArray());
        return new RoundResult(completed, errors, rejected, tokens, sw.Elapsed.TotalSeconds, ttft, rates);
    }

    /// <summary>Starts `mt serve` on a free loopback port and waits for its "listening on" line.</summary>
    private static Process StartServer(string mt, string model, string parallel, string queue, string context, out string baseUrl)
    {
        var psi = new ProcessStartInfo(mt) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "serve", "--model", model, "--host", "127.0.0.1", "--port", "0", "--parallel", parallel, "--queue", queue, "--context", context })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {mt}");
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"[server] {e.Data}"); };
        p.BeginErrorReadLine();
        while (p.StandardOutput.ReadLine() is { } line)
        {
            Console.WriteLine($"[server] {line}");
            if (line.StartsWith("listening on ", StringComparison.Ordinal))
            {
                baseUrl = line.Split(' ')[2];
                // Keep draining its request lines so the server never blocks on a full pipe.
                _ = Task.Run(() => { while (p.StandardOutput.ReadLine() is not null) { } });
                return p;
            }
        }
        throw new InvalidOperationException($"mt serve exited ({p.ExitCode}) before listening");
    }

    /// <summary>Decode tokens/s of the bare model (no server, one sequence): the same prompt length and token count as a request.</summary>
    private static double BareDecode(string modelPath, int tokens)
    {
        string? tok = modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? null : Path.Combine(Path.GetDirectoryName(modelPath)!, "tok512.bin");
        var m = ModelLoader.Open(modelPath, tok is not null && File.Exists(tok) ? tok : null).Model;
        LlamaBench.Measure(m, "warmup", 8, Math.Min(tokens, 8), GgmlType.F32);
        double best = Enumerable.Range(0, 3).Max(_ => LlamaBench.Measure(m, "bare", 12, tokens, GgmlType.F32).DecodeTokensPerSecond); // best of 3, as mt bench
        (m as IDisposable)?.Dispose();
        GC.Collect();
        return best;
    }

    private static long RssBytes(Process p)
    {
        foreach (var line in File.ReadLines($"/proc/{p.Id}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        return 0;
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    private static double Percentile(List<double> values, double q)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        return sorted[(int)Math.Min(sorted.Count - 1, Math.Round(q * (sorted.Count - 1)))];
    }

    /// <summary>TinyLlama-1.1B's shape with random Q4_0 weights, and stories260K's 512 pieces padded to 32000 tokens.</summary>
    public static void MakeTinyLlamaGguf(string[] args)
    {
        string output = args.Length > 0 ? args[0] : "/tmp/tinyllama-1.1b-shape-q4_0.gguf";
        var small = LlamaTokenizer.LoadLlama2c("data/stories260K/tok512.bin", 512);
        int vocab = LlamaBench.TinyLlama1B.VocabSize;
        var pieces = small.Vocab.Concat(Enumerable.Range(small.VocabSize, vocab - small.VocabSize).Select(i => $" w{i}")).ToArray();
        var scores = small.Scores.Concat(Enumerable.Repeat(-1e6f, vocab - small.VocabSize)).ToArray();
        var model = LlamaBench.RandomLlama(LlamaBench.TinyLlama1B, GgmlType.Q4_0);
        GgufLlama.Save(model, new LlamaTokenizer(pieces, scores), output, GgmlType.Q4_0);
        Console.WriteLine($"{output}: {new FileInfo(output).Length / 1048576.0:F0} MiB");
    }
}
