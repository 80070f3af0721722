using System.Diagnostics;
using ManagedTensor.Models.Formats;

namespace ManagedTensor.Models.Generation;

/// <summary>One measured model: prefill (prompt) and decode (one new token each step, with the KV cache) tokens per second.</summary>
public sealed record BenchResult(string Model, GgmlType Weights, long Parameters, long WeightBytes, int PromptTokens, int DecodeTokens,
                                 double PrefillTokensPerSecond, double DecodeTokensPerSecond)
{
    public override string ToString() =>
        $"{Model,-28} {Weights,-5} {Parameters / 1e6,9:F1}M params {WeightBytes / 1048576.0,9:F1} MiB  prefill {PrefillTokensPerSecond,8:F1} tok/s  decode {DecodeTokensPerSecond,8:F2} tok/s ({DecodeTokens} tokens)";
}

/// <summary>
/// Inference speed of any <see cref="ICausalLM"/> on any device: stories260K (real weights) and a TinyLlama-1.1B-shaped
/// Llama with random weights stored as F32, F16, BF16 or a block format (Q8_0, Q4_0, Q4_K, ...), multiplied as stored
/// (block formats by QMatMul, never expanded).
/// </summary>
public static class LlamaBench
{
    /// <summary>TinyLlama 1.1B's shape: 22 layers, dim 2048, 32 query heads sharing 4 KV heads, SwiGLU 5632, vocab 32000.</summary>
    public static readonly LlamaConfig TinyLlama1B = new(2048, 5632, 22, 32, 4, 32000, 2048);

    /// <summary>Times <paramref name="promptTokens"/> of prefill then <paramref name="decodeTokens"/> greedy decode steps (one sequence, with the KV cache).</summary>
    public static BenchResult Measure(ICausalLM model, string name, int promptTokens, int decodeTokens, GgmlType weights)
    {
        using var cache = model.NewCache(1, Math.Min(model.ContextLength, promptTokens + decodeTokens));
        var sw = Stopwatch.StartNew();
        var prompt = Enumerable.Range(0, promptTokens).Select(p => (p * 7919 + 1) % model.VocabSize).ToArray();
        var logits = model.NextLogits(prompt, cache);                               // prefill: one batch (logits come back to the host)
        double prefill = sw.Elapsed.TotalSeconds;
        sw.Restart();
        for (int i = 0; i < decodeTokens; i++) logits = model.NextLogits([Sampler.ArgMax(logits)], cache);
        double decode = sw.Elapsed.TotalSeconds;
        string where = model.Device == Device.Cpu ? name : $"{name} on {model.Device}";
        return new BenchResult(where, weights, model.WeightCount, model.WeightBytes, promptTokens, decodeTokens,
                               promptTokens / prefill, decodeTokens / decode);
    }

    /// <summary>
    /// A Llama of shape <paramref name="c"/> on <paramref name="device"/> with random matrices stored as <paramref name="type"/>,
    /// values of std about 0.02, norm weights 1, an untied head. Block formats are filled with whole blocks drawn from a
    /// pool of 4096 random blocks encoded once (fast, and never a float32 copy of the matrix); float formats are drawn directly.
    /// </summary>
    public static Llama RandomLlama(LlamaConfig c, GgmlType type, int seed = 1, Device? device = null)
    {
        var rng = new Random(seed);
        var dtype = GgmlTypes.ToDType(type);
        byte[]? pool = null;
        int blockBytes = 0, blockSize = 1;
        if (dtype.IsQuantized())
        {
            (blockSize, blockBytes) = GgmlTypes.Layout(type);
            var values = new float[4096 * blockSize];
            for (int i = 0; i < values.Length; i++) values[i] = (rng.NextSingle() - 0.5f) * 0.07f;   // uniform, std 0.02
            pool = GgmlTypes.Quantize(type, values);
        }
        Tensor Mat(int rows, int cols)
        {
            if (pool is not null)
            {
                var raw = new byte[rows * GgmlTypes.ByteCount(type, cols)];
                for (long b = 0; b < raw.LongLength / blockBytes; b++)
                    Buffer.BlockCopy(pool, rng.Next(4096) * blockBytes, raw, (int)(b * blockBytes), blockBytes);
                return Tensor.FromBlocks(raw, [rows, cols], dtype);
            }
            var f = new float[(long)rows * cols];
            for (long i = 0; i < f.LongLength; i++) f[i] = (rng.NextSingle() - 0.5f) * 0.07f;      // uniform, std 0.02
            return Tensor.FromArray(f, [rows, cols]).To(dtype);
        }
        var weights = c.WeightShapes(tied: false).ToDictionary(w => w.Name,
            w => w.Shape.Length == 1 ? Tensor.Ones(w.Shape) : Mat(w.Shape[0], w.Shape[1]));
        return new Llama(c, weights, device);
    }

    /// <summary>
    /// The whole benchmark, printed to <paramref name="output"/>: stories260K if its path is given, then the 1.1B shape with
    /// each of <paramref name="bigTypes"/> (default Q4_0 and F16; skipped when <paramref name="big"/> is false), on
    /// <paramref name="device"/> (the CPU by default).
    /// </summary>
    /// <param name="contexts">
    /// when given, each model is also measured with that many tokens already in its KV cache (prefill S, then decode): a
    /// decode step's cost should grow with S only by the attention's reads of S keys and values, not by a copy of the cache
    /// </param>
    public static List<BenchResult> Run(TextWriter output, string? stories260KPath, bool big = true, int decodeTokens = 16, GgmlType[]? bigTypes = null,
                                        Device? device = null, int[]? contexts = null)
    {
        var dev = device ?? Device.Cpu;
        var results = new List<BenchResult>();
        void Report(BenchResult r) { results.Add(r); output.WriteLine(r); output.Flush(); }
        output.WriteLine(dev == Device.Cpu
            ? $"CPU inference, {Environment.ProcessorCount} logical cores, AVX2 {System.Runtime.Intrinsics.X86.Avx2.IsSupported}"
            : $"inference on {dev} (weights as stored: block formats through QMatMul)");
        if (stories260KPath is not null)
        {
            // A run this small is over in milliseconds: warm up at the measured shapes (the JIT's first tiers are
            // slow) and report the best of three runs.
            using var m = Llama2c.Load(stories260KPath, dev);
            Measure(m, "warmup", 64, 32, GgmlType.F32);
            var runs = Enumerable.Range(0, 3).Select(_ => Measure(m, "stories260K", 64, 256, GgmlType.F32)).ToList();
            Report(runs.MaxBy(r => r.DecodeTokensPerSecond)! with { PrefillTokensPerSecond = runs.Max(r => r.PrefillTokensPerSecond) });
            AtContexts(m, "stories260K", 64, GgmlType.F32);
        }
        if (big)
        {
            foreach (var type in bigTypes ?? [GgmlType.Q4_0, GgmlType.F16])
            {
                using (var m = RandomLlama(TinyLlama1B, type, device: dev))
                {
                    Measure(m, "warmup", 4, 2, type); // both paths: a batched prompt and single tokens
                    Report(Measure(m, "TinyLlama-1.1B shape (random)", 32, decodeTokens, type));
                    AtContexts(m, "TinyLlama-1.1B shape (random)", decodeTokens, type);
                }
                GC.Collect();
            }
        }
        return results;

        void AtContexts(ICausalLM m, string name, int steps, GgmlType type)
        {
            foreach (int s in contexts ?? [])
            {
                int filled = Math.Min(s, m.ContextLength - steps);
                Report(Measure(m, $"{name} ctx {filled}", filled, steps, type));
            }
        }
    }
}
