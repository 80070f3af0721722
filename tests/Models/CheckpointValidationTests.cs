using System.Text.Json.Nodes;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Training;
using ManagedTensor.Tests.Apps;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// A training checkpoint edited so that it still parses: metadata JSON of the wrong kind, values out of range,
/// configs that disagree with each other, a tensor's dtype changed to another of the same size. Each is refused by
/// `mt sample` and `mt train gpt --resume` with one error line naming the file, never run and never a stack trace.
/// </summary>
public sealed class CheckpointValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt-ckpt-").FullName;
    private readonly string _good;

    public CheckpointValidationTests()
    {
        string data = Path.Combine(_dir, "tiny.txt");
        File.WriteAllText(data, File.ReadAllText(Fixtures.RepoFile("data/tinyshakespeare.txt"))[..5000]);
        _good = Path.Combine(_dir, "good");
        var r = Mt.Run("train", "gpt", "--data", data, "--out-dir", _good, "--max-iters", "2", "--eval-interval", "2", "--eval-iters", "1",
            "--n-layer", "1", "--n-head", "2", "--n-embd", "8", "--block-size", "8", "--batch-size", "2", "--sample-length", "0", "--device", "cpu");
        Assert.True(r.Code == 0, r.ToString());
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private int _n;

    /// <summary>A copy of the good run with its checkpoint's metadata and tensors edited.</summary>
    private string Edited(Action<Dictionary<string, string>> metadata, Func<string, Tensor, Tensor>? tensor = null)
    {
        string outDir = Path.Combine(_dir, $"edited{_n++}");
        Directory.CreateDirectory(outDir);
        using var file = SafeTensors.Open(GptCheckpoint.PathIn(_good));
        var meta = file.Metadata.ToDictionary();
        metadata(meta);
        var tensors = file.Tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, tensor?.Invoke(t.Name, file.Load(t.Name)) ?? file.Load(t.Name))).ToList();
        SafeTensors.Save(GptCheckpoint.PathIn(outDir), tensors, meta);
        return outDir;
    }

    /// <summary>Sets <paramref name="key"/> inside the JSON of metadata entry <paramref name="entry"/> (the raw JSON text <paramref name="json"/>).</summary>
    private static Action<Dictionary<string, string>> Set(string entry, string key, string json) => m =>
    {
        var node = JsonNode.Parse(m[entry])!.AsObject();
        node[key] = JsonNode.Parse(json);
        m[entry] = node.ToJsonString();
    };

    private static Action<Dictionary<string, string>> Replace(string entry, string json) => m => m[entry] = json;

    /// <summary>The same bytes as another dtype of the same size: F32 read as I32.</summary>
    private static Tensor AsInt32(Tensor t) => Tensor.FromArray(t.ToArray<float>().Select(BitConverter.SingleToInt32Bits).ToArray(), t.Shape);

    private static void AssertRefused(string outDir, string expected)
    {
        foreach (var args in new[]
        {
            new[] { "sample", "--out-dir", outDir, "--length", "2", "--device", "cpu" },
            ["train", "gpt", "--resume", "--out-dir", outDir, "--device", "cpu", "--sample-length", "0"],
        })
        {
            var r = Mt.Run(args);
            var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(r.Code == 1 && lines.Length == 1 && lines[0].StartsWith("error: ", StringComparison.Ordinal), $"mt {string.Join(' ', args)}:\n{r}");
            Assert.Contains(GptCheckpoint.PathIn(outDir), lines[0]);
            Assert.Contains(expected, lines[0]);
        }
    }

    [Fact]
    public void The_unedited_copy_loads() =>
        Assert.Equal(0, Mt.Run("sample", "--out-dir", Edited(_ => { }), "--length", "2", "--device", "cpu").Code);

    [Theory]
    [InlineData("null", "tokenizer")]
    [InlineData("[]", "tokenizer")]
    [InlineData("5", "tokenizer")]
    [InlineData("\"char\"", "tokenizer")]
    [InlineData("{\"kind\":\"char\",\"chars\":null}", "chars")]
    [InlineData("{\"kind\":\"char\",\"chars\":\"aa\"}", "appears twice")]
    [InlineData("{\"kind\":\"bytes\"}", "unknown kind")]
    public void Tokenizer_of_the_wrong_kind(string json, string expected) => AssertRefused(Edited(Replace("tokenizer", json)), expected);

    [Theory]
    [InlineData("model_config", "null")]
    [InlineData("model_config", "[]")]
    [InlineData("train_config", "5")]
    [InlineData("train_state", "\"x\"")]
    public void Config_of_the_wrong_kind(string entry, string json) => AssertRefused(Edited(Replace(entry, json)), entry);

    [Theory]
    [InlineData("history", "null", "history")]
    [InlineData("history", "[null]", "history[0]")]
    [InlineData("iter", "-5", "iter = -5")]
    [InlineData("optimizer_steps", "7", "optimizer_steps")]
    [InlineData("last_eval_iter", "99", "last_eval_iter")]
    [InlineData("best_val_loss", "\"NaN\"", "best_val_loss")]
    public void Train_state_out_of_range(string key, string json, string expected) => AssertRefused(Edited(Set("train_state", key, json)), expected);

    [Theory]
    [InlineData("eval_interval", "0", "--eval-interval")]
    [InlineData("batch_size", "0", "--batch-size")]
    [InlineData("learning_rate", "\"NaN\"", "--lr")]
    [InlineData("data_path", "null", "--data")]
    public void Train_config_out_of_range(string key, string json, string expected) => AssertRefused(Edited(Set("train_config", key, json)), expected);

    [Fact]
    public void Model_config_that_disagrees_with_the_run()
    {
        // n_head 2 -> 1 changes no tensor's shape: only the cross-check with train_config can see it.
        AssertRefused(Edited(Set("model_config", "n_head", "1")), "n_head 1");
        AssertRefused(Edited(Set("model_config", "vocab_size", "7")), "vocab_size 7");
    }

    [Fact]
    public void Tensor_dtype_changed_to_another_of_the_same_size()
    {
        AssertRefused(Edited(_ => { }, (name, t) => name == "transformer.wte.weight" ? AsInt32(t) : t), "'transformer.wte.weight' is I32");
        AssertRefused(Edited(_ => { }, (name, t) => name.StartsWith("optim.exp_avg_sq.", StringComparison.Ordinal) ? AsInt32(t) : t), "is I32");
    }
}
