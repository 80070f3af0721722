using ManagedTensor.Gpu;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Apps;

/// <summary>
/// Every verb with bad arguments, as a careless user types them: each ends with a non-zero exit code and one line
/// "error: ..." on stderr, in the user's terms: no stack trace, none of .NET's wording ("(Parameter 'x')", "Actual
/// value was", CLR type names). A test fails if MtApp.Run throws: that is what reaches the user as a stack trace.
/// </summary>
public sealed class UserErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt-usererr-").FullName;
    private readonly string _tiny, _aFile;

    public UserErrorTests()
    {
        _tiny = Path.Combine(_dir, "tiny.txt");
        File.WriteAllText(_tiny, File.ReadAllText(Fixtures.RepoFile("data/tinyshakespeare.txt"))[..3000]);
        _aFile = Path.Combine(_dir, "a-file");
        File.WriteAllText(_aFile, "not a directory");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] DotNetWording = ["(Parameter '", "Actual value was", "System.", "Exception", "   at ", "Unhandled"];

    /// <summary>Runs one bad command line and checks what the user sees; returns the error line.</summary>
    private static string AssertOneLineError(params string[] args)
    {
        var r = Mt.Run(args);
        string all = r.Out + r.Err;
        Assert.True(r.Code != 0, $"mt {string.Join(' ', args)} succeeded:\n{r}");
        foreach (string w in DotNetWording) Assert.False(all.Contains(w, StringComparison.Ordinal), $"mt {string.Join(' ', args)} shows \"{w}\":\n{r}");
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1 && lines[0].StartsWith("error: ", StringComparison.Ordinal), $"mt {string.Join(' ', args)}: expected one error line on stderr:\n{r}");
        Assert.Equal(1, r.Code);
        return lines[0];
    }

    public static TheoryData<string[]> BadCommandLines() => new()
    {
        // train
        new[] { "train", "gpt", "--lr", "NaN" },
        new[] { "train", "gpt", "--lr", "Infinity" },
        new[] { "train", "gpt", "--lr", "-1" },
        new[] { "train", "gpt", "--lr", "abc" },
        new[] { "train", "gpt", "--n-head", "0" },
        new[] { "train", "gpt", "--n-embd", "130", "--n-head", "4" },
        new[] { "train", "gpt", "--dropout", "1.5" },
        new[] { "train", "gpt", "--beta1", "1" },
        new[] { "train", "gpt", "--batch-size", "0" },
        new[] { "train", "gpt", "--max-iters", "-3" },
        new[] { "train", "gpt", "--tokenizer", "bytes" },
        new[] { "train", "gpt", "--preset", "nope" },
        new[] { "train", "gpt", "--seed", "-1" },
        new[] { "train", "gpt", "--device", "tpu" },
        new[] { "train", "gpt", "--data", "/no/such/file.txt" },
        new[] { "train", "gpt", "--resume", "--out-dir", "/no/such/run" },
        new[] { "train", "gpt", "--bogus" },
        // sample
        new[] { "sample", "--length", "-5" },
        new[] { "sample", "--length", "0" },
        new[] { "sample", "--num-samples", "-1" },
        new[] { "sample", "--temperature", "NaN" },
        new[] { "sample", "--top-k", "-1" },
        new[] { "sample", "--out-dir", "/no/such/run" },
        new[] { "sample", "--gpt2", "/no/such/gpt2" },
        // generate
        new[] { "generate", "--length", "-5" },
        new[] { "generate", "-n", "0" },
        new[] { "generate", "--length", "abc" },
        new[] { "generate", "--temperature", "NaN" },
        new[] { "generate", "--temperature", "-1" },
        new[] { "generate", "--top-p", "NaN" },
        new[] { "generate", "--top-p", "0" },
        new[] { "generate", "--top-p", "1.5" },
        new[] { "generate", "--top-k", "-2" },
        new[] { "generate", "--repetition-penalty", "NaN" },
        new[] { "generate", "--repetition-penalty", "0" },
        new[] { "generate", "--seed", "-1" },
        new[] { "generate", "--dtype", "f8" },
        new[] { "generate", "-m", "/no/such/model.bin" },
        new[] { "generate", "-m", "/no/such/model.gguf" },
        new[] { "generate", "--tokenizer", "/no/such/tokenizer.bin" },
        // chat
        new[] { "chat", "--template", "nope" },
        new[] { "chat", "--length", "0" },
        new[] { "chat", "--temperature", "Infinity" },
        new[] { "chat", "-m", "/no/such/dir" },
        // quantize
        new[] { "quantize" },
        new[] { "quantize", "/no/such/in.bin", "out.gguf" },
        new[] { "quantize", "data/stories260K/stories260K.bin", "out.gguf", "--type", "Q4_1" },
        new[] { "quantize", "data/stories260K/stories260K.bin", "out.gguf", "--type", "IQ2_XXS" },
        new[] { "quantize", "data/stories260K/stories260K.bin", "/proc/mt-cannot-write.gguf" },
        // bench
        new[] { "bench", "--types", "Q4_K" },
        new[] { "bench", "--types", "nope" },
        new[] { "bench", "--device", "tpu" },
        new[] { "bench", "gemm", "--device", "cpu" },
        new[] { "bench", "qmatmul", "--device", "ilgpu-cpu" },
        new[] { "bench", "yolo", "--device", "cpu", "--imgsz", "100" },
        new[] { "bench", "yolo", "--device", "cpu", "--mode", "eval" },
        new[] { "bench", "yolo", "--device", "cpu", "--model", "yolov9n" },
        new[] { "bench", "yolo", "--device", "cpu", "--iters", "3", "--warmup", "3" },
        new[] { "bench", "yolo", "--device", "cpu", "--batch", "-1" },
        // attention-bench
        new[] { "attention-bench", "--device", "cpu", "--dtype", "bf16" },
        new[] { "attention-bench", "--device", "cpu", "--batch", "0" },
        new[] { "attention-bench", "--device", "cpu", "--seq", "abc" },
        new[] { "attention-bench", "--device", "cpu", "--heads", "4", "--kv-heads", "3" },
        new[] { "attention-bench", "--device", "cpu", "--dtype", "f64" },
        // selftest, demo, the root
        new[] { "selftest", "--scale", "nope", "--device", "ilgpu-cpu" },
        new[] { "selftest", "--device", "tpu" },
        new[] { "demo", "--bogus" },
        new[] { "no-such-verb" },
    };

    [Theory]
    [MemberData(nameof(BadCommandLines))]
    public void Every_verb_with_bad_arguments_ends_in_one_error_line(string[] args)
    {
        // Training writes into --out-dir: keep it in this test's folder, not the test binary's.
        if (args[0] == "train" && !args.Contains("--out-dir")) args = [.. args, "--out-dir", Path.Combine(_dir, "run")];
        AssertOneLineError(args);
    }

    /// <summary>This machine has no GPU in CI: `--device cuda` must say so in one line on every verb that takes it.</summary>
    [Theory]
    [InlineData("train", "gpt", "--device", "cuda", "--max-iters", "1")]
    [InlineData("sample", "--device", "cuda")]
    [InlineData("generate", "--device", "cuda")]
    [InlineData("chat", "--device", "cuda:1")]
    [InlineData("bench", "--device", "cuda")]
    [InlineData("bench", "gemm")]
    [InlineData("bench", "qmatmul")]
    [InlineData("bench", "yolo")]
    [InlineData("attention-bench")]
    public void Cuda_without_a_gpu_is_one_clear_line(params string[] args)
    {
        if (GpuDevices.ListCuda().Devices.Count > 0) return; // a GPU host: nothing to refuse
        string line = AssertOneLineError(args);
        Assert.Contains("no CUDA device", line);
    }

    [Fact]
    public void Selftest_without_a_gpu_reports_the_reason_without_a_trace()
    {
        if (GpuDevices.ListCuda().Devices.Count > 0) return;
        var r = Mt.Run("selftest", "--device", "cuda");
        Assert.Equal(2, r.Code); // selftest's documented code for a device it cannot open
        foreach (string w in DotNetWording) Assert.DoesNotContain(w, r.Out + r.Err);
    }

    [Fact]
    public void An_unwritable_out_dir_is_found_before_the_data_is_read()
    {
        // Tests run as root, so a read-only mode would not stop a write: a path under a regular file, and one in /proc, cannot be written.
        string line = AssertOneLineError("train", "gpt", "--out-dir", Path.Combine(_aFile, "run"), "--data", "/no/such/data.txt");
        Assert.Contains("--out-dir", line);
        Assert.Contains(_aFile, line);
        if (Directory.Exists("/proc/self"))
            Assert.Contains("--out-dir /proc/", AssertOneLineError("train", "gpt", "--out-dir", "/proc/mt-run", "--data", "/no/such/data.txt"));
    }

    [Fact]
    public void An_unwritable_quantize_output_is_found_before_the_model_is_read()
    {
        string line = AssertOneLineError("quantize", "/no/such/model.bin", Path.Combine(_aFile, "out.gguf"));
        Assert.Contains("cannot write", line);
    }

    [Fact]
    public void Text_shorter_than_the_block_is_refused_before_the_model_is_built()
    {
        // Block 2,000,000 on 3,000 characters: a model of that context would be 256M parameters (about 1 GB) before the
        // first batch found the text too short. Refused first, so almost nothing is allocated.
        long before = GC.GetAllocatedBytesForCurrentThread();
        string line = AssertOneLineError("train", "gpt", "--data", _tiny, "--out-dir", Path.Combine(_dir, "o1"), "--block-size", "2000000");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 << 20, "a model was built before the check");
        Assert.Contains("train split", line);
        // The validation split (the last 10%: 300 characters) is the short one here.
        line = AssertOneLineError("train", "gpt", "--data", _tiny, "--out-dir", Path.Combine(_dir, "o2"), "--block-size", "500");
        Assert.Contains("val split", line);
        File.WriteAllText(Path.Combine(_dir, "empty.txt"), "");
        Assert.Contains("empty", AssertOneLineError("train", "gpt", "--data", Path.Combine(_dir, "empty.txt"), "--out-dir", Path.Combine(_dir, "o3")));
    }

    [Fact]
    public void Parse_errors_name_the_option_in_plain_words()
    {
        Assert.Contains("--length: 'abc' is not a whole number", AssertOneLineError("generate", "--length", "abc"));
        Assert.Contains("--seed: '-1' is not a whole number >= 0", AssertOneLineError("generate", "--seed", "-1"));
        Assert.Contains("--lr: 'abc' is not a number", AssertOneLineError("train", "gpt", "--lr", "abc"));
        Assert.Contains("--length must be at least 1 (got -5)", AssertOneLineError("sample", "--length", "-5"));
        Assert.Contains("--top-p must be in (0, 1] (got NaN)", AssertOneLineError("generate", "--top-p", "NaN"));
        Assert.Contains("--lr must be a finite number > 0 (got NaN)", AssertOneLineError("train", "gpt", "--lr", "NaN"));
    }

    /// <summary>The real process: the runtime's Main, exit code and stderr as a shell sees them.</summary>
    [Fact]
    public void As_a_process_the_error_is_one_line_on_stderr_and_exit_code_1()
    {
        var r = Mt.RunProcess("generate", "--temperature", "NaN");
        Assert.True(r.Code == 1, r.ToString());
        Assert.Equal("", r.Out);
        Assert.Equal(["error: --temperature must be a finite number >= 0 (got NaN) (mt generate --help lists the options)"], r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}
