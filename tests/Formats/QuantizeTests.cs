using ManagedTensor.Apps;
using ManagedTensor.Models;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Tokenizers;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Formats;

/// <summary>
/// `mt quantize --type`: every type it offers is written, read back and runs; Q4_K_M places Q6_K where llama.cpp does;
/// rows that do not fill a K-quant's blocks fall back as llama.cpp's do.
/// </summary>
public sealed class QuantizeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt-quantize-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // 256-wide so every K-quant applies; 8 layers so use_more_bits picks some and not others (0, 3, 6, 7).
    private static readonly LlamaConfig Shape = new(256, 512, 8, 4, 2, 300, 64);

    private static LlamaTokenizer Tokenizer(int n) =>
        new(Enumerable.Range(0, n).Select(i => i switch { 0 => "<unk>", 1 => "<s>", 2 => "</s>", _ => $"t{i}" }).ToArray(), new float[n]);

    public static TheoryData<string> Types() => new(QuantRecipe.Names);

    [Theory, MemberData(nameof(Types))]
    public void EveryOfferedTypeIsWrittenAndRuns(string type)
    {
        var model = LlamaBench.RandomLlama(Shape, GgmlType.F32, seed: 3);
        string path = Path.Combine(_dir, type + ".gguf");
        GgufLlama.Save(model, Tokenizer(Shape.VocabSize), path, QuantRecipe.Parse(type));
        using (var g = GgufFile.Open(path))
        {
            var expected = type == "Q4_K_M" ? GgmlType.Q4_K : Enum.Parse<GgmlType>(type);
            Assert.Equal(expected, g.Tensor("blk.1.attn_q.weight").Type);
            Assert.Equal(GgmlType.F32, g.Tensor("blk.1.attn_norm.weight").Type);
        }
        var (loaded, _) = ModelLoader.OpenLlama(path, null);
        int[] ids = [1, 5, 9, 200];
        using var cache = model.NewCache();
        using var loadedCache = loaded.NewCache();
        var want = model.NextLogits(ids, cache);
        var got = loaded.NextLogits(ids, loadedCache);
        // Random weights give logits of order 1; fewer bits, larger differences (TQ2_0 keeps only the weights' signs).
        double tol = type switch { "F32" => 1e-5, "F16" or "BF16" or "Q8_0" => 0.05, "TQ2_0" => double.PositiveInfinity, _ => 0.5 };
        for (int i = 0; i < want.Length; i++) Assert.True(Math.Abs(want[i] - got[i]) <= tol, $"{type}: logit {i} = {got[i]}, F32 model {want[i]}");
        Assert.All(got, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void Q4_K_MPutsQ6_KWhereLlamaCppDoes()
    {
        var model = LlamaBench.RandomLlama(Shape, GgmlType.F32, seed: 4);
        string path = Path.Combine(_dir, "km.gguf");
        GgufLlama.Save(model, Tokenizer(Shape.VocabSize), path, QuantRecipe.Parse("q4_k_m"));
        using var g = GgufFile.Open(path);
        int[] more = [0, 3, 6, 7]; // use_more_bits for 8 layers: l < 1, l >= 7, (l - 1) % 3 == 2
        for (int l = 0; l < Shape.NLayers; l++)
        {
            var want = more.Contains(l) ? GgmlType.Q6_K : GgmlType.Q4_K;
            Assert.Equal(want, g.Tensor($"blk.{l}.attn_v.weight").Type);
            Assert.Equal(want, g.Tensor($"blk.{l}.ffn_down.weight").Type);
            Assert.Equal(GgmlType.Q4_K, g.Tensor($"blk.{l}.ffn_up.weight").Type);
        }
        Assert.Equal(GgmlType.Q6_K, g.Tensor("output.weight").Type);
        Assert.Equal(GgmlType.Q4_K, g.Tensor("token_embd.weight").Type);
    }

    [Fact]
    public void RowsThatDoNotFillAK_QuantBlockFallBackAsLlamaCppDoes()
    {
        Assert.Equal(GgmlType.Q5_0, QuantRecipe.Compatible(GgmlType.Q4_K, 64));
        Assert.Equal(GgmlType.Q8_0, QuantRecipe.Compatible(GgmlType.Q6_K, 288));
        Assert.Equal(GgmlType.Q5_1, QuantRecipe.Compatible(GgmlType.Q5_K, 96));
        Assert.Equal(GgmlType.F32, QuantRecipe.Compatible(GgmlType.Q4_0, 48));
        Assert.Equal(GgmlType.Q4_K, QuantRecipe.Compatible(GgmlType.Q4_K, 512));
    }

    [Fact]
    public void TheCommandWritesQ4_KAndBF16AndRefusesWhatItDoesNotWrite()
    {
        foreach (string type in new[] { "Q4_K", "BF16", "q4_k_m" })
        {
            string path = Path.Combine(_dir, $"stories-{type}.gguf");
            var w = new StringWriter();
            int code = MtApp.Run(["quantize", RepoPaths.Stories260K, path, "--tokenizer", RepoPaths.Tok512, "--type", type], w);
            Assert.True(code == 0, $"--type {type}: exit {code}: {w}");
            using var g = GgufFile.Open(path);
            // stories260K is 64 wide: Q4_K falls back to Q5_0 there, as llama.cpp's does.
            Assert.Equal(type == "BF16" ? GgmlType.BF16 : GgmlType.Q5_0, g.Tensor("blk.0.attn_q.weight").Type);
        }
        Assert.NotEqual(0, MtApp.Run(["quantize", RepoPaths.Stories260K, Path.Combine(_dir, "x.gguf"), "--type", "Q3_K"], TextWriter.Null));
        var e = Assert.Throws<ArgumentException>(() => QuantRecipe.Parse("Q3_K"));
        Assert.Contains("Q4_K_M", e.Message); // the refusal lists what is offered
    }
}
