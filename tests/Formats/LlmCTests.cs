using ManagedTensor.Models.Formats;
using Xunit;

namespace ManagedTensor.Tests.Formats;

/// <summary>llm.c GPT-2 model and tokenizer files, written here byte by byte from llm.c's documented layout.</summary>
public sealed class LlmCTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"mt-llmc-{Guid.NewGuid():N}");
    public LlmCTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, true);

    // maxT 4, V 5, Vp 8, L 2, heads 2, C 4. Sizes of the 16 parameter arrays in llm.c order:
    private static readonly int[] Sizes = [8 * 4, 4 * 4, 2 * 4, 2 * 4, 2 * 12 * 4, 2 * 12, 2 * 4 * 4, 2 * 4, 2 * 4, 2 * 4, 2 * 16 * 4, 2 * 16, 2 * 4 * 16, 2 * 4, 4, 4];

    /// <summary>Element i of parameter p holds p * 1000 + i, so every name can be checked against its place in the file.</summary>
    private string WriteModel(int version = 3, Action<int[]>? header = null)
    {
        var h = new int[256];
        int[] fields = [20240326, version, 4, 5, 2, 2, 4, 8];
        fields.CopyTo(h, 0);
        header?.Invoke(h);
        string path = Path.Combine(_dir, $"m{Guid.NewGuid():N}.bin");
        using var w = new BinaryWriter(File.Create(path));
        foreach (int v in h) w.Write(v);
        for (int p = 0; p < Sizes.Length; p++)
            for (int i = 0; i < Sizes[p]; i++)
            {
                float v = p * 1000 + i;
                if (version == 3) w.Write(v);
                else w.Write((ushort)(BitConverter.SingleToInt32Bits(v) >> 16)); // bf16: the top half of the float32 bits
            }
        return path;
    }

    [Theory]
    [InlineData(3)]
    [InlineData(5)]
    public void ParametersLandUnderNanoGptNames(int version)
    {
        var (shape, p) = LlmC.LoadGpt2(WriteModel(version));
        float Stored(float v) => version == 3 ? v : BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(v) & unchecked((int)0xFFFF0000));
        Assert.Equal(new Gpt2Shape(4, 5, 8, 2, 2, 4), shape);
        Assert.Equal(2 + 2 + 12 * 2 + 1, p.Count);
        Assert.Equal([8, 4], p["transformer.wte.weight"].Shape);
        Assert.Same(p["transformer.wte.weight"], p["lm_head.weight"]);
        Assert.Equal(Stored(1000f), p["transformer.wpe.weight"].ToArray<float>()[0]);
        Assert.Equal([12, 4], p["transformer.h.1.attn.c_attn.weight"].Shape);
        Assert.Equal(Stored(4000f + 48), p["transformer.h.1.attn.c_attn.weight"].ToArray<float>()[0]); // layer 1 starts after 3C*C
        Assert.Equal([16, 4], p["transformer.h.0.mlp.c_fc.weight"].Shape);
        Assert.Equal([4, 16], p["transformer.h.1.mlp.c_proj.weight"].Shape);
        Assert.Equal(Stored(12000f + 64 + 63), p["transformer.h.1.mlp.c_proj.weight"].ToArray<float>()[^1]);
        Assert.Equal(Stored(15003f), p["transformer.ln_f.bias"].ToArray<float>()[3]);
    }

    [Fact]
    public void BadFilesAreRejected()
    {
        string good = WriteModel();
        var bytes = File.ReadAllBytes(good);
        var variants = new List<(string What, string Path)>();
        foreach (int cut in new[] { 0, 4, 100, 1023, 1024, 2000, bytes.Length - 1 })
        {
            string p = Path.Combine(_dir, $"cut{cut}.bin");
            File.WriteAllBytes(p, bytes.AsSpan(0, cut).ToArray());
            variants.Add(($"truncated at {cut}", p));
        }
        variants.Add(("magic", WriteModel(header: h => h[0] = 1234)));
        variants.Add(("version 4", WriteModel(header: h => h[1] = 4)));
        variants.Add(("heads 3", WriteModel(header: h => h[5] = 3)));
        variants.Add(("padded < vocab", WriteModel(header: h => h[7] = 4)));
        variants.Add(("channels huge", WriteModel(header: h => h[6] = int.MaxValue)));
        variants.Add(("layers 0", WriteModel(header: h => h[4] = 0)));
        variants.Add(("layers 3 (size mismatch)", WriteModel(header: h => h[4] = 3)));
        foreach (var (what, path) in variants)
        {
            var e = Record.Exception(() => LlmC.LoadGpt2(path));
            Assert.True(e is InvalidModelFileException && e.Message.Contains(path), $"{what}: {e?.GetType().Name}: {e?.Message}");
        }
    }

    private string WriteTokenizer(int version, byte[][] tokens, int eot, int extra = 0)
    {
        var h = new int[256];
        h[0] = 20240328; h[1] = version; h[2] = tokens.Length; h[3] = eot;
        string path = Path.Combine(_dir, $"t{Guid.NewGuid():N}.bin");
        using var w = new BinaryWriter(File.Create(path));
        foreach (int v in h) w.Write(v);
        foreach (var t in tokens) { w.Write((byte)t.Length); w.Write(t); }
        for (int i = 0; i < extra; i++) w.Write((byte)0);
        return path;
    }

    [Fact]
    public void TokenizerDecodesBytesAndRejectsBadFiles()
    {
        byte[][] toks = ["Hel"u8.ToArray(), "lo"u8.ToArray(), " w\xC3"u8.ToArray().Take(3).ToArray(), [0xA9], "<|endoftext|>"u8.ToArray()];
        var table = LlmC.LoadTokenizer(WriteTokenizer(2, toks, 4));
        Assert.Equal(4, table.EndOfText);
        Assert.Equal("Hello wé", table.Decode([0, 1, 2, 3])); // é split across two tokens
        foreach (var (what, path) in new[]
                 {
                     ("eot outside", WriteTokenizer(2, toks, 9)), ("trailing", WriteTokenizer(2, toks, 4, extra: 1)),
                     ("version 7", WriteTokenizer(7, toks, 4)), ("empty token", WriteTokenizer(2, [[], [1]], 0)),
                 })
        {
            var e = Record.Exception(() => LlmC.LoadTokenizer(path));
            Assert.True(e is InvalidModelFileException && e.Message.Contains(path), $"{what}: {e?.GetType().Name}: {e?.Message}");
        }
    }

    [Fact]
    public void HuggingFaceConv1DWeightsAreTransposed()
    {
        var cAttn = Tensor.FromArray(Enumerable.Range(0, 4 * 12).Select(i => (float)i).ToArray(), [4, 12]); // (in C, out 3C)
        var hf = new Dictionary<string, Tensor>
        {
            ["wte.weight"] = Tensor.FromArray(new float[8 * 4], [8, 4]),
            ["h.0.attn.c_attn.weight"] = cAttn,
            ["h.0.attn.bias"] = Tensor.FromArray(new float[16], [1, 1, 4, 4]),
            ["h.0.ln_1.weight"] = Tensor.FromArray(new float[4], [4]),
        };
        var m = Gpt2HfMapping.ToNanoGpt(hf);
        Assert.False(m.ContainsKey("transformer.h.0.attn.bias"));
        var w = m["transformer.h.0.attn.c_attn.weight"];
        Assert.Equal([12, 4], w.Shape);
        Assert.Equal(1f * 12 + 5, w.ToArray<float>()[5 * 4 + 1]); // Linear[out 5, in 1] = Conv1D[in 1, out 5]
        Assert.Same(m["transformer.wte.weight"], m["lm_head.weight"]);
        Assert.Same(hf["h.0.ln_1.weight"], m["transformer.h.0.ln_1.weight"]);
    }
}
