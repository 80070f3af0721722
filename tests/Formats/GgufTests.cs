using System.Diagnostics;
using System.Text.Json;
using ManagedTensor.Models;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Formats;

/// <summary>GGUF reader and writer against files and values from tests/fixtures/gguf/make_fixtures.py (independent numpy writer).</summary>
public class GgufTests
{
    private static string Fixture(string name) => RepoPaths.Of("tests", "fixtures", "gguf", name);
    private static readonly Lazy<JsonElement> Expected = new(() => JsonDocument.Parse(File.ReadAllText(Fixture("expected.json"))).RootElement);

    private static void AssertTensorsMatch(GgufFile g, JsonElement tensors)
    {
        foreach (var t in tensors.EnumerateObject())
        {
            var info = g.Tensor(t.Name);
            Assert.Equal((uint)t.Value.GetProperty("type").GetInt32(), (uint)info.Type);
            Assert.Equal(t.Value.GetProperty("ne").EnumerateArray().Select(e => e.GetInt64()), info.Dims);
            var want = t.Value.GetProperty("values").EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();
            Assert.Equal(want, g.ReadF32(t.Name)); // bit-exact: both decoders follow ggml
        }
        Assert.Equal(tensors.EnumerateObject().Count(), g.Tensors.Count);
    }

    [Fact]
    public void ReadsEveryMetadataTypeAndDequantizesEveryTensorTypeExactly()
    {
        using var g = GgufFile.Open(Fixture("tensors.gguf"));
        Assert.Equal(3u, g.Version);
        Assert.Equal("test", g.GetString("general.architecture"));
        Assert.Equal((byte)200, g.Metadata["v.u8"]);
        Assert.Equal((sbyte)-100, g.Metadata["v.i8"]);
        Assert.Equal((ushort)60000, g.Metadata["v.u16"]);
        Assert.Equal((short)-30000, g.Metadata["v.i16"]);
        Assert.Equal(4000000000u, g.Metadata["v.u32"]);
        Assert.Equal(-2000000000, g.Metadata["v.i32"]);
        Assert.Equal(1.5f, g.Metadata["v.f32"]);
        Assert.Equal(true, g.Metadata["v.bool"]);
        Assert.Equal("héllo ▁world", g.Metadata["v.str"]);
        Assert.Equal((1UL << 63) + 5, g.Metadata["v.u64"]);
        Assert.Equal(-(1L << 62), g.Metadata["v.i64"]);
        Assert.Equal(Math.PI, g.Metadata["v.f64"]);
        Assert.Equal([1, -2, 3], g.GetArray<int>("v.arr_i32"));
        Assert.Equal(["a", "", "ü"], g.GetArray<string>("v.arr_str"));
        var nested = g.GetArray<GgufArray>("v.arr_nested");
        Assert.Equal([[1, 2], [], [3]], nested.Select(a => ((byte[])a.Items).ToArray()).ToArray());
        Assert.Empty(g.GetArray<float>("v.arr_empty"));
        Assert.Equal(0, g.DataOffset % 32);
        AssertTensorsMatch(g, Expected.Value.GetProperty("tensors.gguf").GetProperty("tensors"));
    }

    [Fact]
    public void HonoursGeneralAlignment()
    {
        using var g = GgufFile.Open(Fixture("aligned64.gguf"));
        Assert.Equal(64, g.Alignment);
        Assert.Equal(0, g.DataOffset % 64);
        Assert.Equal(64, g.Tensor("b").Offset);
        AssertTensorsMatch(g, Expected.Value.GetProperty("aligned64.gguf").GetProperty("tensors"));
    }

    [Fact]
    public void QuantizersProduceGgmlReferenceBytes()
    {
        using var g = GgufFile.Open(Fixture("tensors.gguf"));
        foreach (var (name, type) in new[] { ("t.q8_0", GgmlType.Q8_0), ("t.q4_0", GgmlType.Q4_0) })
        {
            var src = Expected.Value.GetProperty("sources").GetProperty(name).EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();
            Assert.Equal(g.TensorBytes(g.Tensor(name)).ToArray(), GgmlTypes.Quantize(type, src));
        }
    }

    [Fact]
    public void QuantizedMatricesMultiplyLikeTheirDecodedValues()
    {
        var rng = new Random(3);
        float[] w = Enumerable.Range(0, 4 * 96).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        float[] x = Enumerable.Range(0, 96).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var xt = Tensor.FromArray(x, [1, 96]);
        foreach (var type in new[] { GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0 })
        {
            var m = new ManagedTensor.Nn.Linear(Tensor.FromArray(w, [4, 96]).To(GgmlTypes.ToDType(type)));
            var deq = m.Weight.To(DType.F32).ToArray<float>();
            // The integer kernels see x quantized to Q8_0 (ggml's vec_dot_q*_q8_0); F16 rows are dotted with x as is.
            var xs = x;
            if (type != GgmlType.F16) { xs = new float[96]; ManagedTensor.Quant.Q8_0.Decode(GgmlTypes.Quantize(GgmlType.Q8_0, x), xs); }
            var y = m.Forward(xt).ToArray<float>();
            for (int r = 0; r < 4; r++)
            {
                double exact = 0, deqDot = 0;
                for (int c = 0; c < 96; c++) { exact += w[r * 96 + c] * x[c]; deqDot += deq[r * 96 + c] * xs[c]; }
                Assert.True(Math.Abs(y[r] - deqDot) < 1e-4, $"{type} row {r}: {y[r]} vs dequantized dot {deqDot}");
                Assert.True(Math.Abs(y[r] - exact) < (type == GgmlType.Q4_0 ? 0.6 : 0.1), $"{type} row {r}: {y[r]} vs exact {exact}");
            }
        }
    }

    [Fact]
    public void Q4KMatrixStaysEncodedAndMultipliesLikeItsDecodedValues()
    {
        using var g = GgufFile.Open(Fixture("tensors.gguf"));
        var m = g.Matrix("t.q4_k", 2, 256);
        Assert.Equal(DType.Q4_K, m.DType);
        Assert.Equal(2 * 144, m.ToBlockBytes().Length);
        var w = g.ReadF32("t.q4_k");
        var x = Enumerable.Range(0, 4 * 256).Select(i => (i % 17 - 8) / 8f).ToArray(); // 4 rows of activations
        var y = new ManagedTensor.Nn.Linear(m).Forward(Tensor.FromArray(x, [4, 256])).ToArray<float>();
        for (int t = 0; t < 4; t++)
            for (int r = 0; r < 2; r++)
            {
                double want = 0, scale = 0;
                for (int c = 0; c < 256; c++) { want += w[r * 256 + c] * x[t * 256 + c]; scale += Math.Abs(w[r * 256 + c] * x[t * 256 + c]); }
                // QMatMul rounds x to Q8_K (8 bits against the block's largest value): within 1% of sum |w x|.
                Assert.True(Math.Abs(want - y[t * 2 + r]) <= 0.01 * scale, $"row {r} of x {t}: {y[t * 2 + r]}, decoded product {want}");
            }
    }

    /// <summary>A file using every metadata type and the four writable tensor types, deterministic.</summary>
    internal static void WriteSample(string path)
    {
        // Values exact in float (the same bytes on every machine).
        float[] v = Enumerable.Range(0, 64 * 2).Select(i => ((i * 37) % 101 - 50) / 16f * (1 + i % 5)).ToArray();
        new GgufWriter()
            .Add("general.architecture", "test").Add("u8", (byte)7).Add("i8", (sbyte)-7).Add("u16", (ushort)65535).Add("i16", (short)-2)
            .Add("u32", 123456u).Add("i32", -5).Add("f32", 0.25f).Add("bool", false).Add("str", "ünï ▁code").Add("u64", ulong.MaxValue)
            .Add("i64", long.MinValue).Add("f64", -1e300)
            .Add("arr", new GgufArray(GgufValueType.Float32, new[] { 1f, 2f }))
            .Add("nested", new GgufArray(GgufValueType.Array, new[] { new GgufArray(GgufValueType.String, new[] { "x", "yz" }) }))
            .AddTensor("f32", [64, 2], GgmlType.F32, v).AddTensor("f16", [64, 2], GgmlType.F16, v)
            .AddTensor("q8_0", [64, 2], GgmlType.Q8_0, v).AddTensor("q4_0", [64, 2], GgmlType.Q4_0, v)
            .Write(path);
    }

    [Fact]
    public void WriterOutputIsReadBackByUsAndByThePythonReader()
    {
        string path = Path.Combine(Path.GetTempPath(), $"mt-gguf-{Guid.NewGuid():N}.gguf");
        try
        {
            WriteSample(path);
            // The committed copy was checked with `make_fixtures.py read`; its output is csharp_writer.json.
            Assert.Equal(File.ReadAllBytes(Fixture("csharp_writer.gguf")), File.ReadAllBytes(path));
            var py = JsonDocument.Parse(File.ReadAllText(Fixture("csharp_writer.json"))).RootElement;
            using (var g = GgufFile.Open(path))
            {
                AssertTensorsMatch(g, py.GetProperty("tensors"));
                Assert.Equal(ulong.MaxValue, g.Metadata["u64"]);
                Assert.Equal(["x", "yz"], (string[])g.GetArray<GgufArray>("nested")[0].Items);
            }
            if (!File.Exists("/usr/bin/python3")) return; // the committed JSON above already holds the python reader's view
            var psi = new ProcessStartInfo("/usr/bin/python3", [Fixture("make_fixtures.py"), "read", path]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi)!;
            string stdout = p.StandardOutput.ReadToEnd();
            p.WaitForExit(60_000);
            if (p.ExitCode != 0) return; // numpy missing on this machine
            var live = JsonDocument.Parse(stdout).RootElement;
            Assert.Equal(py.GetProperty("tensors").ToString(), live.GetProperty("tensors").ToString());
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void LlamaFromAnIndependentHfStyleGgufMatchesTheNumpyForward()
    {
        // make_llama_fixture.py: random HF-layout weights, Q/K permuted to interleaved as llama.cpp's converter does,
        // logits from a float64 forward with HF's half-split RoPE on the unpermuted weights.
        var want = JsonDocument.Parse(File.ReadAllText(Fixture("llama_tiny.json"))).RootElement;
        var (model, tok) = ModelLoader.OpenLlama(Fixture("llama_tiny.gguf"), null);
        Assert.Equal(new ManagedTensor.Models.LlamaConfig(32, 64, 2, 4, 2, 32, 64), model.Config);
        Assert.False(model.TiedHead);
        Assert.Equal(" a", tok.Vocab[3]); // U+2581 read as a space
        var tokens = want.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var logits = want.GetProperty("logits").EnumerateArray().ToArray();
        using var cache = model.NewCache();
        for (int p = 0; p < tokens.Length; p++)
        {
            var got = model.NextLogits([tokens[p]], cache).Select(v => (double)v).ToArray();
            TestUtil.AssertClose(logits[p].EnumerateArray().Select(e => e.GetDouble()).ToArray(), got, 1e-4, 1e-4, $"position {p}");
        }
        // Control: the same weights read with half-split RoPE (no permutation) drift away after position 0.
        var state = model.StateDict();
        using var wrong = new ManagedTensor.Models.Llama(model.Config with { Rope = ManagedTensor.Nn.RopeLayout.HalfSplit }, state);
        using var wrongCache = wrong.NewCache();
        var wrongLogits = wrong.NextLogits(tokens, wrongCache);
        var wantLast = logits[^1].EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.True(wantLast.Zip(wrongLogits).Max(p => Math.Abs(p.First - p.Second)) > 0.01);

        // The whole sequence as one prefill batch ends in the same logits.
        using var batchCache = model.NewCache();
        var batch = model.NextLogits(tokens, batchCache).Select(v => (double)v).ToArray();
        TestUtil.AssertClose(logits[^1].EnumerateArray().Select(e => e.GetDouble()).ToArray(), batch, 1e-4, 1e-4, "prefill");
    }

    [Fact]
    public void Stories260KRoundTripsThroughGguf()
    {
        var (model, tok) = ModelLoader.OpenLlama(RepoPaths.Stories260K, RepoPaths.Tok512);
        string dir = Path.Combine(Path.GetTempPath(), $"mt-gguf-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var want = File.ReadAllLines(RepoPaths.Of("tests", "fixtures", "stories260K", "greedy200.txt")).Select(int.Parse).Take(100).ToList();
            foreach (var type in new[] { GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0 })
            {
                string path = Path.Combine(dir, $"stories260K-{type}.gguf");
                Quantize.Run(RepoPaths.Stories260K, RepoPaths.Tok512, path, type, TextWriter.Null);
                var (m2, t2) = ModelLoader.OpenLlama(path, null);
                Assert.Equal(model.Config, m2.Config);
                Assert.Equal(tok.Vocab, t2.Vocab);
                Assert.Equal(tok.Scores, t2.Scores);
                if (type == GgmlType.Q8_0)
                {
                    // llama.cpp's token types: <unk> UNKNOWN (2), BOS and EOS CONTROL (3), the 256 <0xNN> tokens BYTE (6), so that
                    // llama.cpp prints a byte token as its byte (a newline, not "<0x0A>"); the rest NORMAL (1).
                    using var g = GgufFile.Open(path);
                    var types = g.GetArray<int>("tokenizer.ggml.token_type");
                    Assert.Equal("<unk>", tok.Vocab[0]);
                    Assert.Equal([2, 3, 3], types[..3]);
                    Assert.Equal("<0x0A>", tok.Vocab[3 + 10]);
                    Assert.All(types[3..259], t => Assert.Equal(6, t));
                    Assert.All(types[259..], t => Assert.Equal(1, t));
                    Assert.Equal(0, g.GetInt("tokenizer.ggml.unknown_token_id"));
                    Assert.Equal(DType.Q8_0, m2.StateDict()["model.layers.0.self_attn.q_proj.weight"].DType);
                }
                var got = TextGenerator.Generate(m2, t2, [1], 100, new SamplerOptions(), stopTokens: []).Generated;
                int agree = got.Zip(want).TakeWhile(p => p.First == p.Second).Count();
                // F32 is exact; F16 and Q8_0 keep the greedy path for a long stretch; Q4_0 on a 260K model drifts sooner.
                int min = type switch { GgmlType.F32 => 100, GgmlType.F16 => 50, GgmlType.Q8_0 => 20, _ => 3 };
                Assert.True(agree >= min, $"{type}: first {agree} greedy tokens agree with F32, expected >= {min}");
            }
        }
        finally { Directory.Delete(dir, true); }
    }
}
