using ManagedTensor.Apps;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Training;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// The trainer end to end through the `mt` command line on tiny data: train 20 steps, checkpoint,
/// resume from step 10 to 20 and get the same losses and the same final weights, sample.
/// </summary>
public abstract class TrainCliTestBase : IDisposable
{
    protected string Dir { get; } = Directory.CreateTempSubdirectory("mt-train-").FullName;
    private readonly string _data;

    protected TrainCliTestBase()
    {
        _data = Path.Combine(Dir, "tiny.txt");
        File.WriteAllText(_data, File.ReadAllText(Fixtures.RepoFile("data/tinyshakespeare.txt"))[..20_000]);
    }

    public void Dispose()
    {
        Directory.Delete(Dir, recursive: true);
        GC.SuppressFinalize(this);
    }

    protected string[] TrainArgs(string outDir, int maxIters) =>
        ["train", "gpt", "--data", _data, "--out-dir", outDir, "--max-iters", maxIters.ToString(), "--lr-decay-iters", "20",
         "--warmup-iters", "5", "--eval-interval", "10", "--eval-iters", "2", "--log-interval", "1", "--n-layer", "2", "--n-head", "2",
         "--n-embd", "16", "--block-size", "16", "--batch-size", "4", "--dropout", "0.1", "--sample-length", "0"];

    protected static (int Code, string Output) Mt(params string[] args)
    {
        var w = new StringWriter();
        int code = MtApp.Run(args, w);
        return (code, w.ToString());
    }

    /// <summary>"iter N: loss X" of each progress line "iter N/MAX: loss X, ..." (timings and MAX differ between runs).</summary>
    protected static List<string> Losses(string output) =>
        output.Split('\n').Where(l => l.StartsWith("iter ", StringComparison.Ordinal))
            .Select(l => System.Text.RegularExpressions.Regex.Replace(l.Split(',')[0], @"/\d+:", ":")).ToList();
}

/// <summary>The CPU runs: train, checkpoint, resume exactly, sample; clear errors for bad checkpoints.</summary>
public sealed class TrainCliTests : TrainCliTestBase
{
    [Fact]
    public void Train_checkpoint_resume_exactly_and_sample()
    {
        string full = Path.Combine(Dir, "full"), split = Path.Combine(Dir, "split");
        var (code, straight) = Mt(TrainArgs(full, 20));
        Assert.True(code == 0, straight);
        foreach (var f in new[] { "ckpt.safetensors", "config.json", "loss.png" })
            Assert.True(File.Exists(Path.Combine(full, f)), $"{f} missing after training:\n{straight}");
        Assert.Empty(Directory.GetFiles(full, "*.tmp*"));
        Assert.Contains("step 10: train loss", straight);
        Assert.Contains("step 20: train loss", straight);

        var (c1, first) = Mt(TrainArgs(split, 10));
        Assert.True(c1 == 0, first);
        var (c2, resumed) = Mt(["train", "gpt", "--resume", "--out-dir", split, "--max-iters", "20", "--sample-length", "0"]);
        Assert.True(c2 == 0, resumed);
        Assert.Contains("resuming from", resumed);
        Assert.Equal(Losses(straight), Losses(first).Concat(Losses(resumed)).ToList());

        // Same weights and optimizer state at the end, bit for bit (dropout masks replayed too).
        var a = SafeTensors.Load(GptCheckpoint.PathIn(full));
        var b = SafeTensors.Load(GptCheckpoint.PathIn(split));
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, t) in a) Assert.True(t.ToArray<float>().SequenceEqual(b[name].ToArray<float>()), $"{name} differs after resume");

        var (c3, sample1) = Mt("sample", "--out-dir", full, "--length", "40", "--prompt", "the", "--seed", "7");
        var (_, sample2) = Mt("sample", "--out-dir", full, "--length", "40", "--prompt", "the", "--seed", "7");
        Assert.True(c3 == 0, sample1);
        Assert.StartsWith("the", sample1);
        Assert.True(sample1.Split('\n')[0].Length + sample1.Length > 40, sample1);
        Assert.Equal(sample1, sample2);
    }

    [Fact]
    public void Missing_checkpoint_is_a_clear_error()
    {
        string nowhere = Path.Combine(Dir, "nothing-here");
        var e = Assert.Throws<FileNotFoundException>(() => GptCheckpoint.Load(nowhere));
        Assert.Contains(nowhere, e.Message);
    }

    [Fact]
    public void Corrupt_checkpoint_is_a_clear_error()
    {
        string path = Path.Combine(Dir, "ckpt.safetensors");
        SafeTensors.Save(path, [new("w", Tensor.Zeros([2]))], new Dictionary<string, string> { ["format"] = "something-else" });
        var e = Assert.Throws<InvalidDataException>(() => GptCheckpoint.Load(path));
        Assert.Contains(path, e.Message);
    }
}

/// <summary>
/// The same commands on the GPU backend (its kernels on ILGPU's CPU accelerator), then sampled on the CPU.
/// In the ilgpu-cpu collection: its allocations must not move the allocator tests' statistics.
/// </summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)]
public sealed class TrainCliGpuBackendTests : TrainCliTestBase
{
    [Fact]
    public void Trains_on_the_gpu_backend_and_samples_from_its_checkpoint_on_the_cpu()
    {
        string outDir = Path.Combine(Dir, "gpu");
        var args = TrainArgs(outDir, 1).ToList(); // ILGPU's CPU accelerator is slow: one step, evaluated before and after
        args[args.IndexOf("--eval-interval") + 1] = "1";
        args[args.IndexOf("--eval-iters") + 1] = "1";
        args[args.IndexOf("--n-layer") + 1] = "1";
        args.AddRange(["--device", "ilgpu-cpu"]);
        var (code, text) = Mt([.. args]);
        Assert.True(code == 0, text);
        Assert.Contains("on ilgpu-cpu", text);
        Assert.Contains("step 1: train loss", text);
        var (c2, sample) = Mt("sample", "--out-dir", outDir, "--length", "10", "--prompt", "the", "--device", "cpu");
        Assert.True(c2 == 0, sample);
        Assert.StartsWith("the", sample);
    }
}
