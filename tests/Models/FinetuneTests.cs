using ManagedTensor.Models;
using ManagedTensor.Models.Adapters;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Tokenizers;
using ManagedTensor.Nn;
using ManagedTensor.Tests.Apps;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>`mt finetune` on the real stories260K: instruction data, a short LoRA run resumed exactly, QLoRA, --merge.</summary>
public class FinetuneTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mt-finetune-" + Guid.NewGuid().ToString("N"));

    public FinetuneTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private string Text()
    {
        string path = Path.Combine(_dir, "text.txt");
        File.WriteAllText(path, File.ReadAllText(RepoPaths.Of("data", "tinyshakespeare.txt"))[..4000]);
        return path;
    }

    private static Mt.Result Finetune(params string[] args)
    {
        var r = Mt.Run(["finetune", "--model", RepoPaths.Stories260K, "--tokenizer", RepoPaths.Tok512, "--batch-size", "2",
            "--lora-r", "2", "--eval-iters", "1", "--eval-interval", "2", "--log-interval", "1", "--lr", "1e-2", "--lora-dropout", "0.1", .. args]);
        Assert.True(r.Code == 0, r.ToString());
        return r;
    }

    [Fact]
    public void A_jsonl_line_without_the_needed_fields_is_named_by_its_line_number()
    {
        string text = "{\"instruction\": \"a\", \"output\": \"b\"}\n\n{\"instruction\": \"x\", \"answer\": \"y\"}\n";
        var e = Assert.Throws<UserErrorException>(() => FinetuneData.ParseJsonl("d.jsonl", text));
        Assert.Contains("d.jsonl line 3", e.Message);
        Assert.Contains("\"output\"", e.Message);
        Assert.Contains("\"answer\"", e.Message);
        var m = Assert.Throws<UserErrorException>(() => FinetuneData.ParseJsonl("d.jsonl", "{\"messages\": [{\"role\": \"user\"}]}"));
        Assert.Contains("line 1: messages[0]", m.Message);
    }

    [Fact]
    public void Only_response_tokens_are_targets()
    {
        var tok = LlamaTokenizer.LoadLlama2c(RepoPaths.Tok512, 512);
        var messages = FinetuneData.ParseJsonl("d.jsonl", "{\"instruction\": \"Tell a story.\", \"input\": \"a cat\", \"output\": \"The cat sat.\"}")[0];
        var ex = FinetuneData.Render(messages, tok, ChatFormat.Plain);
        var response = ex.Tokens.Where((_, i) => ex.IsResponse[i]).ToList();
        var prompt = ex.Tokens.Where((_, i) => !ex.IsResponse[i]).ToList();
        Assert.Equal(tok.Eos, response[^1]);
        Assert.Equal("The cat sat.\n", tok.DecodeText(response).TrimStart());
        Assert.Contains("User: Tell a story.\n\na cat", tok.DecodeText(prompt));
        Assert.DoesNotContain("cat sat", tok.DecodeText(prompt));
    }

    [Fact]
    public void A_run_stopped_and_resumed_ends_with_the_same_adapter_and_losses_and_merge_matches_base_plus_adapter()
    {
        string data = Text(), a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b"), merged = Path.Combine(_dir, "merged.gguf");
        var full = Finetune("--data", data, "--block-size", "16", "--iters", "4", "--out-dir", a, "--merge", merged);
        Assert.Contains("trainable values", full.Out);
        Finetune("--data", data, "--block-size", "16", "--iters", "2", "--out-dir", b);
        var resumed = Mt.Run("finetune", "--resume", "--out-dir", b, "--iters", "4");
        Assert.True(resumed.Code == 0, resumed.ToString());
        Assert.Contains("resuming from", resumed.Out);
        var ta = SafeTensors.Load(Path.Combine(a, PeftAdapter.WeightsFile));
        var tb = SafeTensors.Load(Path.Combine(b, PeftAdapter.WeightsFile));
        Assert.Equal(ta.Keys.Order(), tb.Keys.Order());
        Assert.Contains(ta.Values, t => t.ToDoubleArray().Any(v => v != 0));
        foreach (var k in ta.Keys) Assert.Equal(ta[k].ToDoubleArray(), tb[k].ToDoubleArray());
        string Last(string output) => output.Split('\n').Last(l => l.StartsWith("val loss", StringComparison.Ordinal));
        Assert.Equal(Last(full.Out).Split(';')[0], Last(resumed.Out).Split(';')[0]);

        // --merge: the merged GGUF computes what the base with the saved adapter computes.
        var ids = Tensor.FromArray(new long[] { 1, 45, 200, 17, 300, 8 }, [1, 6]);
        var adapted = ModelLoader.Open(RepoPaths.Stories260K, RepoPaths.Tok512);
        PeftAdapter.Load(a, (Module)adapted.Model);
        using var noGrad = GradMode.NoGrad();
        ((Module)adapted.Model).Eval();
        var expected = adapted.Model.Forward(ids, null, allPositions: true);
        var m = ModelLoader.Open(merged);
        TestUtil.AssertClose(expected, m.Model.Forward(ids, null, allPositions: true), 1e-4, 1e-4, "merged GGUF");
    }

    [Fact]
    public void Qlora_on_an_nf4_base_trains_on_jsonl_instructions()
    {
        string data = Path.Combine(_dir, "d.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 12).Select(i => $"{{\"instruction\": \"Count to {i}.\", \"output\": \"{string.Join(" ", Enumerable.Range(1, i % 4 + 1))}\"}}"));
        var r = Finetune("--data", data, "--block-size", "48", "--iters", "3", "--quantize", "nf4", "--target-modules", "q_proj,v_proj", "--out-dir", Path.Combine(_dir, "q"));
        Assert.Contains("10 train / 2 val instruction examples", r.Out);
        Assert.Contains("QLoRA base: 30 Linear weights in NF4", r.Out);         // 5 layers x q,k,v,o,gate,up
        Assert.Contains("kept float: model.layers.0.mlp.down_proj (in-features 172", r.Out);
        var bad = Mt.Run("finetune", "--model", RepoPaths.Stories260K, "--tokenizer", RepoPaths.Tok512, "--data", data, "--target-modules", "qkv", "--out-dir", Path.Combine(_dir, "x"));
        Assert.Equal(1, bad.Code);
        Assert.Contains("'qkv' matches no Linear", bad.Err);
    }
}
