using ManagedTensor.Models;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using Xunit;

namespace ManagedTensor.Tests.Llama;

public class LlamaBenchTests
{
    [Fact]
    public void SimdAndScalarQuantizedDotsAgree()
    {
        var rng = new Random(5);
        var w = new float[32 * 40]; var x = new float[32 * 40];
        for (int i = 0; i < w.Length; i++) { w[i] = rng.NextSingle() * 2 - 1; x[i] = (rng.NextSingle() - 0.5f) * 10; }
        var xq = GgmlTypes.Quantize(GgmlType.Q8_0, x);
        var w4 = GgmlTypes.Quantize(GgmlType.Q4_0, w);
        var w8 = GgmlTypes.Quantize(GgmlType.Q8_0, w);
        // Exact integer block sums; the SIMD loops add the block terms in vector lanes, so float32 rounding apart.
        float s4 = ManagedTensor.Quant.Q4_0.DotScalar(w4, xq, 40), s8 = ManagedTensor.Quant.Q8_0.DotScalar(w8, xq, 40);
        Assert.Equal(s4, ManagedTensor.Quant.Q4_0.Dot(w4, xq, 40), 1e-5 * (1 + Math.Abs(s4)));
        Assert.Equal(s8, ManagedTensor.Quant.Q8_0.Dot(w8, xq, 40), 1e-5 * (1 + Math.Abs(s8)));
    }

    [Fact]
    public void BenchRunsOnSmallShapes()
    {
        var c = new LlamaConfig(64, 96, 2, 4, 2, 100, 32);
        foreach (var type in new[] { GgmlType.F16, GgmlType.Q4_0, GgmlType.Q8_0 })
        {
            using var model = LlamaBench.RandomLlama(c, type);
            var r = LlamaBench.Measure(model, "tiny", 4, 8, type);
            Assert.Equal(type, r.Weights);
            Assert.True(r.DecodeTokensPerSecond > 0 && r.PrefillTokensPerSecond > 0);
            Assert.Equal(100L * 64 * 2 + 64 + 2 * (2L * 64 + 2 * 64 * 64 + 2 * 32 * 64 + 3 * 96 * 64), r.Parameters);
        }
        var sw = new StringWriter();
        var results = LlamaBench.Run(sw, RepoPaths.Stories260K, big: false, contexts: [100, 5000]);
        Assert.Equal(3, results.Count);
        Assert.Contains("stories260K", sw.ToString());
        // --context: decode after S cached tokens, S capped so the decode steps fit the model's 512 positions.
        Assert.Equal([100, 512 - 64], results.Skip(1).Select(r => r.PromptTokens));
        Assert.EndsWith("ctx 448", results[2].Model);
    }
}
