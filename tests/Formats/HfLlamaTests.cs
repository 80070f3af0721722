using System.Text.Json;
using ManagedTensor.Apps;
using ManagedTensor.Models;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Tokenizers;
using ManagedTensor.Nn;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Formats;

/// <summary>
/// Hugging Face checkpoints written by tests/fixtures/hf_llama/make_fixture.py (numpy, independent of the C# code): the
/// loader must reproduce its float64 logits at every position, its tokenizations, and its greedy continuations.
/// </summary>
public class HfLlamaTests
{
    public static string Dir(string name) => RepoPaths.Of("tests", "fixtures", "hf_llama", name);

    private static JsonElement Reference(string name) => JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir(name), "reference.json"))).RootElement;

    private static readonly Lazy<LoadedModel> Bf16 = new(() => ModelLoader.Open(Dir("bf16_sharded")));
    private static readonly Lazy<LoadedModel> F16 = new(() => ModelLoader.Open(Dir("f16_tied")));

    private static ManagedTensor.Models.Llama Llama(LoadedModel m) => Assert.IsType<ManagedTensor.Models.Llama>(m.Model);

    private static void AssertLogitsMatch(LoadedModel m, JsonElement reference, double tol)
    {
        var tokens = reference.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var want = reference.GetProperty("logits").EnumerateArray().Select(r => r.EnumerateArray().Select(e => e.GetDouble()).ToArray()).ToArray();
        using var cache = m.Model.NewCache();
        for (int p = 0; p < tokens.Length; p++)
            TestUtil.AssertClose(want[p], m.Model.NextLogits([tokens[p]], cache).Select(v => (double)v).ToArray(), tol, tol, $"position {p}");
        // The whole prompt as one prefill batch ends in the same logits.
        using var batch = m.Model.NewCache();
        TestUtil.AssertClose(want[^1], m.Model.NextLogits(tokens, batch).Select(v => (double)v).ToArray(), tol, tol, "prefill");
    }

    [Fact]
    public void Bf16ShardedGqaLlama3ScaledModelMatchesTheNumpyForward()
    {
        var m = Bf16.Value;
        var c = Llama(m).Config;
        Assert.Equal((32, 64, 2, 4, 2, 305, 128), (c.Dim, c.HiddenDim, c.NLayers, c.NHeads, c.NKvHeads, c.VocabSize, c.SeqLen));
        Assert.Equal(RopeLayout.HalfSplit, c.Rope);
        Assert.Equal(new Llama3RopeScaling(8, 1, 4, 8192), c.RopeScaling);
        Assert.Equal(500000f, c.RopeTheta);
        Assert.False(Llama(m).TiedHead);
        Assert.Equal(DType.BF16, Llama(m).StateDict()["model.layers.1.self_attn.q_proj.weight"].DType); // kept 16-bit
        AssertLogitsMatch(m, Reference("bf16_sharded"), 2e-4);

        // Control: the same weights with interleaved RoPE pairs drift away (the layout matters, and the test can see it).
        using var wrong = new ManagedTensor.Models.Llama(c with { Rope = RopeLayout.Interleaved }, Llama(m).StateDict());
        var tokens = Reference("bf16_sharded").GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var last = Reference("bf16_sharded").GetProperty("logits").EnumerateArray().Last().EnumerateArray().Select(e => e.GetDouble());
        using var cache = wrong.NewCache();
        Assert.True(last.Zip(wrong.NextLogits(tokens, cache)).Max(p => Math.Abs(p.First - p.Second)) > 0.01);
    }

    [Fact]
    public void F16TiedModelMatchesTheNumpyForward()
    {
        var m = F16.Value;
        Assert.True(Llama(m).TiedHead);
        Assert.Equal(1e-6f, Llama(m).Config.NormEps);
        Assert.Equal(DType.F16, Llama(m).StateDict()["model.embed_tokens.weight"].DType);
        AssertLogitsMatch(m, Reference("f16_tied"), 2e-4);
    }

    [Theory]
    [InlineData("bf16_sharded")]
    [InlineData("f16_tied")]
    public void TokenizerJsonEncodesAsTheReferenceAndDecodesBack(string name)
    {
        var tok = (name == "bf16_sharded" ? Bf16 : F16).Value.Tokenizer;
        foreach (var c in Reference(name).GetProperty("encode").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            var want = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToList();
            Assert.True(want.SequenceEqual(tok.Encode(text, bos: tok.AddBos)), $"{name}: '{text}' -> [{string.Join(", ", tok.Encode(text))}], expected [{string.Join(", ", want)}]");
            Assert.Equal(text, tok.Decode(want));
        }
    }

    [Fact]
    public void CheckpointMetadataGivesBosStopTokensAndTheChatTemplate()
    {
        var b = Bf16.Value;
        Assert.Equal(b.Tokenizer.TokenId("<|begin_of_text|>"), b.Tokenizer.Bos);
        Assert.Equal(b.Tokenizer.TokenId("<|eot_id|>"), b.Tokenizer.Eos); // tokenizer_config.json's eos_token
        // config/generation_config eos list (<|end_of_text|>, <|eot_id|>) plus the template's end of turn.
        Assert.Equal(new[] { "<|end_of_text|>", "<|eot_id|>" }.Select(s => b.Tokenizer.TokenId(s)!.Value).Order(), b.StopTokens.Order());
        Assert.Equal(ChatFormat.Llama3, ChatTemplates.Detect(b.ChatTemplate));
        // Special tokens are one id each only when asked for.
        Assert.Equal([b.Tokenizer.TokenId("<|eot_id|>")!.Value], b.Tokenizer.Encode("<|eot_id|>", bos: false, parseSpecial: true));
        Assert.True(b.Tokenizer.Encode("<|eot_id|>", bos: false).Count > 1);

        var f = F16.Value;
        Assert.Equal((1, 2), (f.Tokenizer.Bos, f.Tokenizer.Eos));
        Assert.Equal([2], f.StopTokens);
        Assert.Equal(ChatFormat.Zephyr, ChatTemplates.Detect(f.ChatTemplate));
    }

    [Theory]
    [InlineData("bf16_sharded")]
    [InlineData("f16_tied")]
    public void GreedyGenerationFollowsTheReference(string name)
    {
        var r = Reference(name);
        var m = (name == "bf16_sharded" ? Bf16 : F16).Value;
        var prompt = r.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToList();
        var got = TextGenerator.Generate(m.Model, m.Tokenizer, prompt, 8, new SamplerOptions(Temperature: 0), stopTokens: []).Generated;
        Assert.Equal(r.GetProperty("greedy").EnumerateArray().Select(e => e.GetInt32()), got);
    }

    [Fact]
    public void MtGenerateRunsADirectoryOrItsConfigJson()
    {
        var r = Reference("f16_tied");
        string prompt = r.GetProperty("prompt").GetString()!;
        var tok = F16.Value.Tokenizer;
        var greedy = r.GetProperty("greedy").EnumerateArray().Select(e => e.GetInt32()).ToList();
        int stop = greedy.IndexOf(tok.Eos);
        var want = greedy.Take(stop < 0 ? 8 : stop).ToList();
        // The text streams token by token after the prompt, each token's bytes as it follows the one before.
        var bytes = new List<byte>();
        int prev = tok.Encode(prompt)[^1];
        foreach (int t in want) { bytes.AddRange(tok.DecodeBytes(prev, t).ToArray()); prev = t; }
        string expected = prompt + System.Text.Encoding.UTF8.GetString(bytes.ToArray());
        foreach (var path in new[] { Dir("f16_tied"), Path.Combine(Dir("f16_tied"), "config.json") })
        {
            var sw = new StringWriter();
            Assert.True(MtApp.Run(["generate", "--model", path, "--prompt", prompt, "--length", "8", "--temperature", "0"], sw) == 0, sw.ToString());
            Assert.StartsWith(expected + Environment.NewLine, sw.ToString());
        }
    }
}
