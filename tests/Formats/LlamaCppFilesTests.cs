using System.Globalization;
using ManagedTensor.Models;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Formats;

/// <summary>
/// GGUF files written by llama.cpp's own quantizer (tests/fixtures/quant/llamacpp, made by its make_fixtures.sh through
/// LLamaSharp) load in mt and give llama.cpp's outputs: a Q4_K_M file (Q4_K with Q6_K for attn_v, ffn_down and output)
/// and a stories260K Q4_K_S file whose 64-wide rows llama.cpp wrote as Q5_0, Q5_1, Q8_0 and F16 (`mt` refused such
/// files with "type 6 not supported" before).
/// </summary>
public class LlamaCppFilesTests
{
    private static string Fixture(string name) => RepoPaths.Of("tests", "fixtures", "quant", "llamacpp", name);

    [Fact]
    public void AQ4_K_MFileGivesLlamaCppsLogits()
    {
        using (var g = GgufFile.Open(Fixture("tiny-Q4_K_M.gguf")))
        {
            var types = g.Tensors.Select(t => t.Type).ToHashSet();
            Assert.Contains(GgmlType.Q4_K, types);
            Assert.Contains(GgmlType.Q6_K, types);
        }
        var (model, _) = ModelLoader.OpenLlama(Fixture("tiny-Q4_K_M.gguf"), null);
        var ids = File.ReadAllText(Fixture("ids.txt")).Trim().Split(',').Select(int.Parse).ToArray();
        var want = File.ReadAllLines(Fixture("tiny-Q4_K_M.logits")).Select(l => float.Parse(l, CultureInfo.InvariantCulture)).ToArray();
        using var cache = model.NewCache();
        var got = model.NextLogits(ids, cache);
        Assert.Equal(want.Length, got.Length);
        // Same weights; llama.cpp rounds activations to Q8_K for its integer dots, mt's prefill (QMatMul, many rows)
        // multiplies decoded weights in float: the logits (of order 1) agree to ~0.02.
        for (int i = 0; i < want.Length; i++) Assert.True(Math.Abs(want[i] - got[i]) < 0.06, $"logit {i}: mt {got[i]}, llama.cpp {want[i]}");
        Assert.Equal(Sampler.ArgMax(want), Sampler.ArgMax(got));
    }

    [Fact]
    public void AFileOfQ5_0Q5_1AndQ8_0TensorsGivesLlamaCppsGreedyTokens()
    {
        using (var g = GgufFile.Open(Fixture("s260k-Q4_K_S.gguf")))
        {
            var types = g.Tensors.Select(t => t.Type).ToHashSet();
            Assert.Contains(GgmlType.Q5_0, types);
            Assert.Contains(GgmlType.Q5_1, types);
        }
        var (model, _) = ModelLoader.OpenLlama(Fixture("s260k-Q4_K_S.gguf"), null);
        var want = File.ReadAllText(Fixture("s260k-Q4_K_S.greedy")).Trim().Split(' ').Select(int.Parse).ToArray();
        using var cache = model.NewCache();
        var logits = model.NextLogits([1], cache);
        var got = new List<int>();
        for (int p = 1; p <= want.Length; p++)
        {
            got.Add(Sampler.ArgMax(logits));
            if (p < want.Length) logits = model.NextLogits([got[^1]], cache);
        }
        Assert.Equal(want, got);
    }
}
