using ManagedTensor.Models;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Tokenizers;
using ManagedTensor.Nn;
using Xunit;

namespace ManagedTensor.Tests.Llama;

/// <summary>The real stories260K checkpoint against tests/fixtures/stories260K/reference.py (independent numpy, float64).</summary>
public class Stories260KTests
{
    private static readonly Lazy<ManagedTensor.Models.Llama> Model = new(() => Llama2c.Load(RepoPaths.Stories260K));
    private static readonly Lazy<LlamaTokenizer> Tok = new(() => LlamaTokenizer.LoadLlama2c(RepoPaths.Tok512, 512));

    private static int[] Expected() =>
        File.ReadAllLines(RepoPaths.Of("tests", "fixtures", "stories260K", "greedy200.txt")).Select(int.Parse).ToArray();

    private static List<int> Greedy(ManagedTensor.Models.Llama m, int n)
    {
        using var cache = m.NewCache();
        var outp = new List<int>();
        int tok = 1;
        for (int p = 0; p < n; p++)
        {
            tok = Sampler.ArgMax(m.NextLogits([tok], cache));
            outp.Add(tok);
        }
        return outp;
    }

    [Fact]
    public void HeaderMatchesTheKnownShape()
    {
        var c = Model.Value.Config;
        Assert.Equal((64, 172, 5, 8, 4, 512, 512), (c.Dim, c.HiddenDim, c.NLayers, c.NHeads, c.NKvHeads, c.VocabSize, c.SeqLen));
        Assert.True(Model.Value.TiedHead);
    }

    [Fact]
    public void Greedy200TokensMatchTheNumpyReference()
    {
        Assert.Equal(Expected(), Greedy(Model.Value, 200));
    }

    [Fact]
    public void GenerateFromEmptyPromptTellsAStory()
    {
        var sb = new StringWriter();
        var r = TextGenerator.Generate(Model.Value, Tok.Value, Tok.Value.Encode("", bos: true), 200, new SamplerOptions(), stopTokens: [], output: sb);
        Assert.Equal(Expected(), r.Generated);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily.", sb.ToString());
        Assert.Equal(sb.ToString(), r.Text);
        Assert.True(r.DecodeTokensPerSecond > 0);
    }

    [Fact]
    public void RunLoadsFilesAndStreams()
    {
        var sw = new StringWriter();
        var r = TextGenerator.Run(new GenerateOptions(RepoPaths.Stories260K, RepoPaths.Tok512, "Once upon a time", 30), sw);
        Assert.StartsWith("Once upon a time", sw.ToString());
        Assert.InRange(r.Generated.Count, 1, 30);
    }

    [Fact]
    public void HalfSplitRopeWithPermutedWeightsGivesTheSameLogits()
    {
        var m = Model.Value;
        var c = m.Config;
        var weights = m.StateDict().ToDictionary(kv => kv.Key, kv =>
            kv.Key.EndsWith("q_proj.weight", StringComparison.Ordinal) ? ManagedTensor.Models.Llama.PermuteRopeRows(kv.Value, c.NHeads, RopeLayout.Interleaved, RopeLayout.HalfSplit)
            : kv.Key.EndsWith("k_proj.weight", StringComparison.Ordinal) ? ManagedTensor.Models.Llama.PermuteRopeRows(kv.Value, c.NKvHeads, RopeLayout.Interleaved, RopeLayout.HalfSplit)
            : kv.Value);
        using var hf = new ManagedTensor.Models.Llama(c with { Rope = RopeLayout.HalfSplit }, weights);
        using var a = m.NewCache();
        using var b = hf.NewCache();
        int[] toks = [1, 403, 407, 261, 378];
        for (int p = 0; p < toks.Length; p++)
        {
            var la = m.NextLogits([toks[p]], a);
            var lb = hf.NextLogits([toks[p]], b);
            TestUtil.AssertClose(la.Select(x => (double)x).ToArray(), lb.Select(x => (double)x).ToArray(), 1e-4, 1e-4, $"pos {p}");
        }
        // Saved as GGUF, the half-split model's Q/K rows are permuted back to GGUF's interleaved layout: same weights again.
        string path = Path.Combine(Path.GetTempPath(), $"mt-hf-{Guid.NewGuid():N}.gguf");
        try
        {
            GgufLlama.Save(hf, Tok.Value, path, GgmlType.F32);
            using var g = GgufFile.Open(path);
            using var back = GgufLlama.LoadModel(g);
            Assert.Equal(RopeLayout.Interleaved, back.Config.Rope);
            foreach (var name in new[] { "model.layers.2.self_attn.k_proj.weight", "model.layers.2.self_attn.q_proj.weight" })
                Assert.Equal(m.StateDict()[name].ToDoubleArray(), back.StateDict()[name].ToDoubleArray());
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void EncodeMatchesThePythonReferenceAndDecodeInvertsIt()
    {
        var cases = System.Text.Json.JsonDocument.Parse(File.ReadAllText(RepoPaths.Of("tests", "fixtures", "stories260K", "encode.json"))).RootElement;
        Assert.True(cases.GetArrayLength() >= 7);
        foreach (var c in cases.EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            var want = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToList();
            Assert.Equal(want, Tok.Value.Encode(text));
            Assert.Equal(text, Tok.Value.Decode(want));
        }
    }

    [Fact]
    public void TokenizerRoundTripsWithMergesAndByteFallback()
    {
        var t = Tok.Value;
        var ids = t.Encode("Once upon a time", bos: true);
        Assert.Equal(1, ids[0]);
        Assert.Equal(Expected().Take(ids.Count - 1), ids.Skip(1)); // the model's own first tokens spell the same words
        Assert.Equal("Once upon a time", t.Decode(ids));
        string odd = "Zoë ✓ naïve";           // characters outside the 512-token vocabulary use <0xXX> byte tokens
        var oddIds = t.Encode(odd);
        Assert.Contains(oddIds, id => id is >= 3 and < 259);
        Assert.Equal(odd, t.Decode(oddIds));
        Assert.Equal([1], t.Encode(""));
    }
}

public class PrefillTests
{
    [Fact]
    public void BatchedPrefillGivesTheLogitsOfTokenByTokenDecoding()
    {
        var (model, tok) = ModelLoader.OpenLlama(RepoPaths.Stories260K, RepoPaths.Tok512);
        var ids = tok.Encode("Once upon a time, there was a little girl named Lily. She loved to play").ToArray();
        using var seqCache = model.NewCache();
        float[] seq = [];
        for (int p = 0; p < ids.Length; p++) seq = model.NextLogits([ids[p]], seqCache);
        using var batchCache = model.NewCache();
        model.NextLogits(ids.AsSpan(0, 5), batchCache);                        // prefill in two chunks, as a chat does
        var batch = model.NextLogits(ids.AsSpan(5), batchCache);
        TestUtil.AssertClose(seq.Select(v => (double)v).ToArray(), batch.Select(v => (double)v).ToArray(), 1e-4, 1e-4, "last logits");
        for (int l = 0; l < model.Config.NLayers; l++)
            TestUtil.AssertClose(seqCache.Layers[l].Values, batchCache.Layers[l].Values, 1e-4, 1e-4, $"layer {l} values");

        // Q8_0 weights: prefill and decode both multiply by QMatMul (activations quantized per row); both close.
        string path = Path.Combine(Path.GetTempPath(), $"mt-prefill-{Guid.NewGuid():N}.gguf");
        try
        {
            Quantize.Run(RepoPaths.Stories260K, RepoPaths.Tok512, path, GgmlType.Q8_0, TextWriter.Null);
            var (q8, _) = ModelLoader.OpenLlama(path, null);
            Assert.Equal(DType.Q8_0, q8.StateDict()["model.layers.0.mlp.gate_proj.weight"].DType);
            using var qc = q8.NewCache();
            float[] qs = [];
            for (int p = 0; p < ids.Length; p++) qs = q8.NextLogits([ids[p]], qc);
            using var qbc = q8.NewCache();
            var qb = q8.NextLogits(ids, qbc);
            Assert.Equal(Sampler.ArgMax(qs), Sampler.ArgMax(qb));
            // Q8_0 activation rounding (~0.4% per block) compounds over 5 layers and 17 positions: logits agree to ~0.1-0.2.
            TestUtil.AssertClose(qs.Select(v => (double)v).ToArray(), qb.Select(v => (double)v).ToArray(), 0.05, 0.3, "Q8_0 last logits");
        }
        finally { File.Delete(path); }
    }
}
