using System.Diagnostics;
using System.Globalization;
using LLama;
using LLama.Common;
using LLama.Native;

// llama.cpp (through LLamaSharp) for bench/quant_vs_llamacpp.sh, the same measurements as ManagedTensor.Bench's
// `llama-*` commands so the two sides run the same GGUF file, thread count, prompt and lengths:
//   speed MODEL THREADS PROMPT DECODE   prefill and decode tokens/s (prompt ids (p * 7919 + 1) % vocab, then greedy)
//   greedy MODEL N                       N greedy tokens after BOS, as ids on one line
//   logits MODEL ID,ID,...               the last position's logits, one per line
//   quantize IN OUT FTYPE                llama.cpp's quantizer (FTYPE: Q8_0, Q4_0, Q4_K_M, Q4_K_S, Q6_K, ...)
NativeLogConfig.llama_log_set((level, message) => { if (level == LLamaLogLevel.Error) Console.Error.Write(message); });
NativeApi.llama_empty_call(); // loads the native library (the quantizer's P/Invokes do not)
switch (args.FirstOrDefault())
{
    case "speed": Speed(args[1], int.Parse(args[2]), int.Parse(args[3]), int.Parse(args[4])); break;
    case "greedy": Greedy(args[1], int.Parse(args[2])); break;
    case "logits": Logits(args[1], args[2].Split(',').Select(int.Parse).ToArray()); break;
    case "quantize": Quantize(args[1], args[2], args[3]); break;
    default: Console.Error.WriteLine("usage: speed MODEL THREADS PROMPT DECODE | greedy MODEL N | logits MODEL IDS | quantize IN OUT FTYPE"); return 2;
}
return 0;

static (LLamaWeights, LLamaContext) Open(string path, int threads, uint context)
{
    var p = new ModelParams(path)
    {
        ContextSize = context, Threads = threads, BatchThreads = threads, BatchSize = 512, UBatchSize = 512, GpuLayerCount = 0,
        FlashAttention = false,
    };
    var w = LLamaWeights.LoadFromFile(p);
    return (w, w.CreateContext(p));
}

// Runs ids from position pos; returns the logits of the last one (copied).
static float[] Run(LLamaContext ctx, IReadOnlyList<int> ids, int pos)
{
    var batch = new LLamaBatch();
    for (int i = 0; i < ids.Count; i++) batch.Add((LLamaToken)ids[i], (LLamaPos)(pos + i), (LLamaSeqId)0, i == ids.Count - 1);
    var r = ctx.Decode(batch);
    if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode: {r}");
    return ctx.NativeHandle.GetLogitsIth(batch.TokenCount - 1).ToArray();
}

static int ArgMax(float[] v)
{
    int best = 0;
    for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
    return best;
}

static void Speed(string path, int threads, int promptTokens, int decodeTokens)
{
    var (w, ctx) = Open(path, threads, (uint)(promptTokens + decodeTokens + 16));
    using var _w = w;
    using var _c = ctx;
    int vocab = w.Vocab.Count;
    var prompt = Enumerable.Range(0, promptTokens).Select(p => (p * 7919 + 1) % vocab).ToArray();
    Run(ctx, prompt[..Math.Min(4, prompt.Length)], 0);             // warm-up: a batch and a single token
    Run(ctx, [prompt[0]], 4);
    ctx.NativeHandle.MemoryClear();
    var sw = Stopwatch.StartNew();
    var logits = Run(ctx, prompt, 0);
    double prefill = sw.Elapsed.TotalSeconds;
    sw.Restart();
    for (int p = promptTokens; p < promptTokens + decodeTokens; p++) logits = Run(ctx, [ArgMax(logits)], p);
    double decode = sw.Elapsed.TotalSeconds;
    Console.Error.WriteLine($"llama.cpp system info: {NativeApi.llama_print_system_info()}");
    Console.WriteLine(string.Format(CultureInfo.InvariantCulture, "llama.cpp {0} threads {1} prefill {2:F2} tok/s decode {3:F2} tok/s ({4} + {5} tokens)",
        Path.GetFileName(path), threads, promptTokens / prefill, decodeTokens / decode, promptTokens, decodeTokens));
}

static void Greedy(string path, int n)
{
    var (w, ctx) = Open(path, 2, (uint)(n + 8));
    using var _w = w;
    using var _c = ctx;
    var ids = new List<int>();
    var logits = Run(ctx, [1], 0); // BOS
    for (int p = 1; p <= n; p++)
    {
        int next = ArgMax(logits);
        ids.Add(next);
        if (p < n) logits = Run(ctx, [next], p);
    }
    Console.WriteLine(string.Join(' ', ids));
}

static void Logits(string path, int[] ids)
{
    var (w, ctx) = Open(path, 2, (uint)(ids.Length + 8));
    using var _w = w;
    using var _c = ctx;
    foreach (float v in Run(ctx, ids, 0)) Console.WriteLine(v.ToString("R", CultureInfo.InvariantCulture));
}

static void Quantize(string input, string output, string ftype)
{
    var t = Enum.Parse<LLamaFtype>("MOSTLY_" + ftype.ToUpperInvariant());
    if (!LLamaQuantizer.Quantize(input, output, t, nthread: 2, allowRequantize: true, quantizeOutputTensor: true))
        throw new InvalidOperationException($"llama.cpp could not quantize {input} to {ftype}");
    Console.WriteLine($"llama.cpp quantize {input} -> {output}: {ftype}");
}
