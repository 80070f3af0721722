using ManagedTensor.Models;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Tokenizers;
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
        var cache = m.NewCache();
        var outp = new List<int>();
        int tok = 1;
        for (int p = 0; p < n; p++)
        {
            tok = Sampler.ArgMax(m.Forward(tok, p, cache));
            outp.Add(tok);
        }
        return outp;
    }

    [Fact]
    public void HeaderMatchesTheKnownShape()
    {
        var c = Model.Value.Config;
        Assert.Equal((64, 172, 5, 8, 4, 512, 512), (c.Dim, c.HiddenDim, c.NLayers, c.NHeads, c.NKvHeads, c.VocabSize, c.SeqLen));
        Assert.True(Model.Value.Weights.SharedClassifier);
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
        var r = LlamaGenerate.Generate(Model.Value, Tok.Value, Tok.Value.Encode("", bos: true), 200, new SamplerOptions(), stopTokens: [], output: sb);
        Assert.Equal(Expected(), r.Generated);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily.", sb.ToString());
        Assert.Equal(sb.ToString(), r.Text);
        Assert.True(r.DecodeTokensPerSecond > 0);
    }

    [Fact]
    public void RunLoadsFilesAndStreams()
    {
        var sw = new StringWriter();
        var r = LlamaGenerate.Run(new GenerateOptions(RepoPaths.Stories260K, RepoPaths.Tok512, "Once upon a time", 30), sw);
        Assert.StartsWith("Once upon a time", sw.ToString());
        Assert.InRange(r.Generated.Count, 1, 30);
    }

    [Fact]
    public void HalfSplitRopeWithPermutedWeightsGivesTheSameLogits()
    {
        var m = Model.Value;
        var c = m.Config;
        WeightMatrix Perm(WeightMatrix w, int heads) => WeightMatrix.FromF32(
            ManagedTensor.Models.Llama.PermuteRopeRows(w.ToF32(), heads, c.HeadSize, w.Cols, RopeLayout.Interleaved, RopeLayout.HalfSplit), w.Rows, w.Cols);
        var layers = m.Weights.Layers.Select(l => l with { Wq = Perm(l.Wq, c.NHeads), Wk = Perm(l.Wk, c.NKvHeads) }).ToArray();
        var hf = new ManagedTensor.Models.Llama(c with { Rope = RopeLayout.HalfSplit }, m.Weights with { Layers = layers });
        var a = m.NewCache(); var b = hf.NewCache();
        int[] toks = [1, 403, 407, 261, 378];
        for (int p = 0; p < toks.Length; p++)
        {
            var la = m.Forward(toks[p], p, a).ToArray();
            var lb = hf.Forward(toks[p], p, b).ToArray();
            TestUtil.AssertClose(la.Select(x => (double)x).ToArray(), lb.Select(x => (double)x).ToArray(), 1e-4, 1e-4, $"pos {p}");
        }
        // Saved as GGUF, the half-split model's Q/K rows are permuted back to GGUF's interleaved layout: same logits again.
        string path = Path.Combine(Path.GetTempPath(), $"mt-hf-{Guid.NewGuid():N}.gguf");
        try
        {
            GgufLlama.Save(hf, Tok.Value, path, GgmlType.F32);
            using var g = GgufFile.Open(path);
            var back = GgufLlama.LoadModel(g);
            Assert.Equal(RopeLayout.Interleaved, back.Config.Rope);
            Assert.Equal(m.Weights.Layers[2].Wk.ToF32(), back.Weights.Layers[2].Wk.ToF32());
            Assert.Equal(m.Weights.Layers[2].Wq.ToF32(), back.Weights.Layers[2].Wq.ToF32());
        }
        finally { File.Delete(path); }

        // And the permutation is undone by its inverse.
        var w = m.Weights.Layers[0].Wq.ToF32();
        var twice = ManagedTensor.Models.Llama.PermuteRopeRows(
            ManagedTensor.Models.Llama.PermuteRopeRows(w, 8, 8, 64, RopeLayout.Interleaved, RopeLayout.HalfSplit), 8, 8, 64, RopeLayout.HalfSplit, RopeLayout.Interleaved);
        Assert.Equal(w, twice);
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
        var (model, tok) = LlamaGenerate.Load(RepoPaths.Stories260K, RepoPaths.Tok512);
        var ids = tok.Encode("Once upon a time, there was a little girl named Lily. She loved to play").ToArray();
        var seqCache = model.NewCache();
        float[] seq = [];
        for (int p = 0; p < ids.Length; p++) seq = model.Forward(ids[p], p, seqCache).ToArray();
        var batchCache = model.NewCache();
        model.Forward(ids.AsSpan(0, 5), 0, batchCache);                        // prefill in two chunks, as a chat does
        var batch = model.Forward(ids.AsSpan(5), 5, batchCache).ToArray();
        TestUtil.AssertClose(seq.Select(v => (double)v).ToArray(), batch.Select(v => (double)v).ToArray(), 1e-4, 1e-4, "last logits");
        for (int l = 0; l < model.Config.NLayers; l++)
            TestUtil.AssertClose(seqCache.Values[l].Select(v => (double)v).ToArray(), batchCache.Values[l].Select(v => (double)v).ToArray(), 1e-4, 1e-4, $"layer {l} values");

        // Q8_0 weights: prefill multiplies float activations by decoded tiles, decode quantizes activations; both close.
        string path = Path.Combine(Path.GetTempPath(), $"mt-prefill-{Guid.NewGuid():N}.gguf");
        try
        {
            Quantize.Run(RepoPaths.Stories260K, RepoPaths.Tok512, path, GgmlType.Q8_0, TextWriter.Null);
            var (q8, _) = LlamaGenerate.Load(path, null);
            var qc = q8.NewCache();
            float[] qs = [];
            for (int p = 0; p < ids.Length; p++) qs = q8.Forward(ids[p], p, qc).ToArray();
            var qb = q8.Forward(ids, 0, q8.NewCache());
            Assert.Equal(Sampler.ArgMax(qs), Sampler.ArgMax(qb));
            // Q8_0 activation rounding (~0.4% per block) compounds over 5 layers and 17 positions: logits agree to ~0.1-0.2.
            TestUtil.AssertClose(qs.Select(v => (double)v).ToArray(), qb.Select(v => (double)v).ToArray(), 0.05, 0.3, "Q8_0 last logits");
        }
        finally { File.Delete(path); }
    }
}
