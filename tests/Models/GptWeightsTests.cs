using System.Text.Json;
using System.Text.Json.Nodes;
using ManagedTensor.Models;
using ManagedTensor.Models.Formats;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// GPT-2 weights into the GPT model, from a Hugging Face GPT2LMHeadModel checkpoint and from llm.c's .bin layout, both
/// written by tests/fixtures/hf_gpt2/make_fixture.py (numpy, independent of the C# code) with float64 reference logits.
/// </summary>
public class GptWeightsTests
{
    private static string Dir => RepoPaths.Of("tests", "fixtures", "hf_gpt2");
    private static readonly Lazy<JsonElement> Ref = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "reference.json"))).RootElement);

    private static Tensor Ids(string key) =>
        Tensor.FromArray(Ref.Value.GetProperty(key).EnumerateArray().Select(e => (long)e.GetInt32()).ToArray(), [1, Ref.Value.GetProperty(key).GetArrayLength()]);

    private static double[,] Logits(string key)
    {
        var rows = Ref.Value.GetProperty(key).EnumerateArray().Select(r => r.EnumerateArray().Select(e => e.GetDouble()).ToArray()).ToArray();
        var a = new double[rows.Length, rows[0].Length];
        for (int i = 0; i < rows.Length; i++) for (int j = 0; j < rows[0].Length; j++) a[i, j] = rows[i][j];
        return a;
    }

    /// <summary>max |got[t, v] - want[t, v]| over the reference's vocabulary columns (got may have padded columns).</summary>
    private static double MaxDiff(Tensor logits, double[,] want)
    {
        int T = want.GetLength(0), V = want.GetLength(1), vp = logits.Shape[2];
        var got = logits.ToDoubleArray();
        double worst = 0;
        for (int t = 0; t < T; t++) for (int v = 0; v < V; v++) worst = Math.Max(worst, Math.Abs(got[t * vp + v] - want[t, v]));
        return worst;
    }

    [Fact]
    public void HuggingFaceGpt2MatchesTheNumpyForward()
    {
        var model = GptWeights.LoadHf(Dir);
        Assert.Equal(new GptConfig(32, 96, 2, 4, 32, 0, true), model.Config);
        var output = model.Forward(Ids("tokens"), Ids("targets"));
        Assert.True(MaxDiff(output.Logits, Logits("logits")) < 1e-4, $"logits differ by {MaxDiff(output.Logits, Logits("logits")):E2}");
        Assert.Equal(Ref.Value.GetProperty("loss").GetDouble(), output.Loss!.ToDoubleArray()[0], 4);
        // transformers' GPT-2 uses the tanh GELU: within a few 1e-3, and measurably not the same numbers.
        double tanh = MaxDiff(output.Logits, Logits("logits_gelu_tanh"));
        Assert.True(tanh is > 1e-4 and < 5e-3, $"tanh-GELU logits differ by {tanh:E2}");
    }

    [Fact]
    public void LlmCBinaryGivesTheSameModelWithoutThePaddedRows()
    {
        // The file pads wte to 128 rows; the model keeps the 96 real ones (a zero row would score 0 and win samples).
        var model = GptWeights.LoadLlmC(Path.Combine(Dir, "gpt2_tiny.bin"));
        Assert.Equal(new GptConfig(32, 96, 2, 4, 32, 0, true), model.Config);
        var logits = model.Forward(Ids("tokens"), Ids("targets")).Logits;   // (1, T, 96)
        Assert.True(MaxDiff(logits, Logits("logits")) < 1e-4);
        // Same weights either way.
        var hf = GptWeights.LoadHf(Dir).StateDict();
        foreach (var (name, p) in model.StateDict())
            Assert.Equal(hf[name].ToDoubleArray(), p.ToDoubleArray());
        Assert.Equal(model.Config, GptWeights.Load(Path.Combine(Dir, "config.json")).Config);
    }

    [Fact]
    public void BadGpt2CheckpointsAreRejectedNamingTheFile()
    {
        string root = Path.Combine(Path.GetTempPath(), $"mt-gpt2-bad-{Guid.NewGuid():N}");
        try
        {
            int n = 0;
            void Rejected(string what, Action<string> edit, string blamed)
            {
                string d = Path.Combine(root, $"v{n++}");
                Directory.CreateDirectory(d);
                foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Path.Combine(Dir, f), Path.Combine(d, f));
                edit(d);
                var e = Record.Exception(() => GptWeights.LoadHf(d));
                Assert.True(e is InvalidModelFileException ie && ie.FilePath == Path.Combine(d, blamed), $"{what}: {e?.GetType().Name}: {e?.Message}");
            }
            Action<string> Cfg(Action<JsonObject> edit) => d =>
            {
                var j = JsonNode.Parse(File.ReadAllText(Path.Combine(d, "config.json")))!.AsObject();
                edit(j);
                File.WriteAllText(Path.Combine(d, "config.json"), j.ToJsonString());
            };
            Rejected("not GPT-2", Cfg(j => { j["architectures"] = new JsonArray("LlamaForCausalLM"); j["model_type"] = "llama"; }), "config.json");
            Rejected("n_inner", Cfg(j => j["n_inner"] = 64), "config.json");
            Rejected("layer_norm_epsilon", Cfg(j => j["layer_norm_epsilon"] = 1e-6), "config.json");
            Rejected("untied", Cfg(j => j["tie_word_embeddings"] = false), "config.json");
            Rejected("relu", Cfg(j => j["activation_function"] = "relu"), "config.json");
            Rejected("heads", Cfg(j => j["n_head"] = 5), "config.json");
            Rejected("n_embd missing", Cfg(j => j.Remove("n_embd")), "config.json");
            Rejected("vocab 97 vs wte", Cfg(j => j["vocab_size"] = 97), "model.safetensors");
            Rejected("n_positions 64 vs wpe", Cfg(j => j["n_positions"] = 64), "model.safetensors");
            Rejected("three layers", Cfg(j => j["n_layer"] = 3), "model.safetensors");
            Rejected("one layer", Cfg(j => j["n_layer"] = 1), "model.safetensors");
            Rejected("n_embd 64", Cfg(j => j["n_embd"] = 64), "model.safetensors");
            Rejected("truncated", d => File.WriteAllBytes(Path.Combine(d, "model.safetensors"), File.ReadAllBytes(Path.Combine(Dir, "model.safetensors"))[..5000]), "model.safetensors");
        }
        finally { if (Directory.Exists(root)) Directory.Delete(root, true); }
    }
}
