using System.Buffers.Binary;
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
/// CPU inference speed: stories260K (real weights) and a TinyLlama-1.1B-shaped model with random weights stored as
/// F16 or Q4_0, multiplied without materializing float32 weights (F16 rows are converted on the fly, Q4_0 rows are
/// dotted with Q8_0-quantized activations as ggml does).
/// </summary>
public static class LlamaBench
{
    /// <summary>TinyLlama 1.1B's shape: 22 layers, dim 2048, 32 query heads sharing 4 KV heads, SwiGLU 5632, vocab 32000.</summary>
    public static readonly LlamaConfig TinyLlama1B = new(2048, 5632, 22, 32, 4, 32000, 2048);

    /// <summary>
    /// Times <paramref name="promptTokens"/> of prefill then <paramref name="decodeTokens"/> greedy decode steps, on the
    /// CPU span model or, with another <paramref name="device"/>, on <see cref="DeviceLlama"/> (F16 weights stay 16-bit
    /// there, others are expanded to float32).
    /// </summary>
    public static BenchResult Measure(Llama model, string name, int promptTokens, int decodeTokens, Device? device = null)
    {
        var dev = device ?? Device.Cpu;
        var type = model.Weights.Layers[0].Wq.Type;
        using var runner = LlamaGenerate.Runner(model, dev, promptTokens + decodeTokens, type == GgmlType.F16 ? DType.F16 : DType.F32);
        var sw = Stopwatch.StartNew();
        var prompt = Enumerable.Range(0, promptTokens).Select(p => (p * 7919 + 1) % model.Config.VocabSize).ToArray();
        var logits = runner.Forward(prompt, 0);                                 // prefill: one batch (logits come back to the host)
        double prefill = sw.Elapsed.TotalSeconds;
        sw.Restart();
        for (int p = promptTokens; p < promptTokens + decodeTokens; p++) logits = runner.Forward([Sampler.ArgMax(logits)], p);
        double decode = sw.Elapsed.TotalSeconds;
        var w = model.Weights;
        long bytes = w.TokenEmbedding.ByteSize + (w.SharedClassifier ? 0 : w.Classifier.ByteSize)
                     + w.Layers.Sum(l => new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.W1, l.W2, l.W3 }.Sum(m => m.ByteSize));
        string where = dev == Device.Cpu ? name : $"{name} on {dev}";
        return new BenchResult(where, type, w.ParameterCount(model.Config), bytes, promptTokens, decodeTokens,
                               promptTokens / prefill, decodeTokens / decode);
    }

    /// <summary>
    /// A model of shape <paramref name="c"/> with random weights encoded directly as <paramref name="type"/> (F32, F16,
    /// Q8_0 or Q4_0), std about 0.02, so no float32 copy of 16-bit or quantized weights ever exists. Norm weights are ones.
    /// </summary>
    public static Llama RandomLlama(LlamaConfig c, GgmlType type, int seed = 1)
    {
        var rng = new Random(seed);
        WeightMatrix Mat(int rows, int cols)
        {
            if (type == GgmlType.F32)
            {
                var f = new float[(long)rows * cols];
                for (long i = 0; i < f.Length; i++) f[i] = (rng.NextSingle() - 0.5f) * 0.07f;        // uniform, std 0.02
                return WeightMatrix.FromF32(f, rows, cols);
            }
            var raw = new byte[rows * GgmlTypes.ByteCount(type, cols)];
            switch (type)
            {
                case GgmlType.F16:
                    for (int i = 0; i < raw.Length; i += 2)
                        BinaryPrimitives.WriteHalfLittleEndian(raw.AsSpan(i), (Half)((rng.NextSingle() - 0.5f) * 0.07f)); // uniform, std 0.02
                    break;
                case GgmlType.Q4_0:
                case GgmlType.Q8_0:
                    rng.NextBytes(raw);                                                    // random quants ...
                    int bb = GgmlTypes.Layout(type).BlockBytes;
                    var d = (Half)(type == GgmlType.Q4_0 ? 0.0045f : 0.0003f);           // ... scaled to std ~0.02
                    for (int i = 0; i < raw.Length; i += bb) BinaryPrimitives.WriteHalfLittleEndian(raw.AsSpan(i), d);
                    break;
                default: throw new NotSupportedException($"random {type} weights");
            }
            return WeightMatrix.FromEncoded(type, raw, rows, cols);
        }
        float[] Ones() => Enumerable.Repeat(1f, c.Dim).ToArray();
        var layers = Enumerable.Range(0, c.NLayers).Select(_ => new LlamaLayer(
            Ones(), Mat(c.Dim, c.Dim), Mat(c.KvDim, c.Dim), Mat(c.KvDim, c.Dim), Mat(c.Dim, c.Dim),
            Ones(), Mat(c.HiddenDim, c.Dim), Mat(c.Dim, c.HiddenDim), Mat(c.HiddenDim, c.Dim))).ToArray();
        return new Llama(c, new LlamaWeights(Mat(c.VocabSize, c.Dim), layers, Ones(), Mat(c.VocabSize, c.Dim)));
    }

    /// <summary>
    /// The whole benchmark, printed to <paramref name="output"/>: stories260K (F32 and Q8_0 via GGUF types) if its
    /// path is given, then the 1.1B shape with each of <paramref name="bigTypes"/> (default Q4_0 and F16; skipped when
    /// <paramref name="big"/> is false).
    /// </summary>
    public static List<BenchResult> Run(TextWriter output, string? stories260KPath, bool big = true, int decodeTokens = 16, GgmlType[]? bigTypes = null,
                                        Device? device = null)
    {
        var results = new List<BenchResult>();
        void Report(BenchResult r) { results.Add(r); output.WriteLine(r); output.Flush(); }
        output.WriteLine(device is null || device == Device.Cpu
            ? $"CPU inference, {Environment.ProcessorCount} logical cores, AVX2 {System.Runtime.Intrinsics.X86.Avx2.IsSupported}"
            : $"inference on {device} (DeviceLlama: weights expanded to float32, F16 kept 16-bit)");
        if (stories260KPath is not null)
        {
            // A run this small is over in milliseconds: warm up at the measured shapes (the JIT's first tiers are
            // slow) and report the best of three runs.
            var m = Llama2c.Load(stories260KPath);
            Measure(m, "warmup", 64, 32, device);
            var runs = Enumerable.Range(0, 3).Select(_ => Measure(m, "stories260K", 64, 256, device)).ToList();
            Report(runs.MaxBy(r => r.DecodeTokensPerSecond)! with { PrefillTokensPerSecond = runs.Max(r => r.PrefillTokensPerSecond) });
        }
        if (big)
        {
            foreach (var type in bigTypes ?? [GgmlType.Q4_0, GgmlType.F16])
            {
                var m = RandomLlama(TinyLlama1B, type);
                Measure(m, "warmup", 4, 2, device); // both paths: a batched prompt and single tokens
                Report(Measure(m, "TinyLlama-1.1B shape (random)", 32, decodeTokens, device));
                GC.Collect();
            }
        }
        return results;
    }
}
