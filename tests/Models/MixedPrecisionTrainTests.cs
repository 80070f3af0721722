using ManagedTensor.Models.Adapters;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Training;
using ManagedTensor.Tests.Apps;
using ManagedTensor.Tests.IO;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// `mt train` and `mt finetune` with --optim and --autocast (<see cref="TrainingLoop"/>, the one loop both use): the choice
/// is recorded in the checkpoint and a stopped run resumed with it ends where the unbroken run ends, bit for bit, the
/// optimizer's state (8-bit codes and scales, host moments) and the fp16 loss scale included.
/// </summary>
public sealed class MixedPrecisionTrainTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt-mixed-").FullName;
    private readonly string _data;

    public MixedPrecisionTrainTests()
    {
        _data = Path.Combine(_dir, "tiny.txt");
        File.WriteAllText(_data, File.ReadAllText(Fixtures.RepoFile("data/tinyshakespeare.txt"))[..6000]);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Mt.Result Ok(params string[] args)
    {
        var r = Mt.Run(args);
        Assert.True(r.Code == 0, r.ToString());
        return r;
    }

    // n-embd 32: the MLP's c_fc has 32 x 128 = 4096 values, the size from which 8-bit AdamW quantizes its moments.
    private string[] Train(string outDir, int maxIters, params string[] more) =>
    [
        "train", "gpt", "--data", _data, "--out-dir", outDir, "--max-iters", maxIters.ToString(), "--eval-interval", "2", "--eval-iters", "1",
        "--log-interval", "1", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "8", "--batch-size", "2",
        "--warmup-iters", "1", "--lr-decay-iters", "10", "--dropout", "0.1", "--sample-length", "0", "--device", "cpu", .. more,
    ];

    private static void AssertSameRun(string a, string b, string path)
    {
        var ta = SafeTensors.Load(path.Replace("{}", a, StringComparison.Ordinal));
        var tb = SafeTensors.Load(path.Replace("{}", b, StringComparison.Ordinal));
        Assert.Equal(ta.Keys.Order(), tb.Keys.Order());
        foreach (var k in ta.Keys) Assert.True(ta[k].ToDoubleArray().SequenceEqual(tb[k].ToDoubleArray()), $"{k} differs after resuming");
    }

    [Theory]
    [InlineData("adamw8bit", "off", 1)]
    [InlineData("offload", "fp16", 2)]   // with gradient accumulation: the loss scale multiplies each micro-batch's share
    public void A_gpt_run_resumed_with_its_optimizer_and_autocast_ends_as_the_unbroken_run(string optim, string autocast, int accum)
    {
        string full = Path.Combine(_dir, "full"), split = Path.Combine(_dir, "split");
        Ok(Train(full, 4, "--optim", optim, "--autocast", autocast, "--grad-accum", accum.ToString()));
        Ok(Train(split, 2, "--optim", optim, "--autocast", autocast, "--grad-accum", accum.ToString()));
        var resumed = Ok("train", "gpt", "--resume", "--out-dir", split, "--max-iters", "4", "--device", "cpu", "--sample-length", "0");
        AssertSameRun(full, split, Path.Combine("{}", GptCheckpoint.FileName));

        using var ckpt = GptCheckpoint.Load(split);
        Assert.Equal(optim, ckpt.Train.Optim);
        Assert.Equal(autocast, ckpt.Train.Autocast);
        Assert.Equal(4, ckpt.State.Iter);
        var names = ckpt.OptimizerTensors().Keys.ToList();
        if (optim == "adamw8bit") Assert.Contains(names, n => n.EndsWith(".q8", StringComparison.Ordinal)); // 8-bit codes saved as kept
        Assert.Equal(autocast == "fp16", ckpt.State.LossScale is not null);

        // --resume keeps the run's optimizer: another one is refused, naming both.
        var refused = Mt.Run("train", "gpt", "--resume", "--out-dir", split, "--optim", "adamw", "--device", "cpu");
        Assert.Equal(1, refused.Code);
        Assert.Contains($"--optim adamw (the run has {optim})", refused.Err);
    }

    [Fact]
    public void An_fp16_step_whose_gradients_overflow_is_skipped_and_halves_the_loss_scale()
    {
        var cfg = new TrainConfig
        {
            DataPath = _data, OutDir = Path.Combine(_dir, "overflow"), NLayer = 1, NHead = 2, NEmbd = 16, BlockSize = 8, BatchSize = 2,
            MaxIters = 4, WarmupIters = 0, Autocast = "fp16",
        };
        var trainer = GptTrainer.Create(cfg, Device.Cpu);
        var scaler = trainer.Loop.Scaler!;
        var before = trainer.Model.Parameters().Select(p => p.ToArray<float>()).ToList();
        scaler.Restore(1e38, 0); // a forced overflow: the scaled loss is inf in float32
        double loss = trainer.TrainStep(0);
        Assert.True(double.IsFinite(loss), $"the reported loss is the unscaled one, got {loss}");
        Assert.Equal(1, trainer.Loop.SkippedSteps);
        Assert.Equal(0, trainer.Optimizer.StepCount);
        Assert.Equal(5e37, scaler.Scale);
        Assert.Equal(before, trainer.Model.Parameters().Select(p => p.ToArray<float>()).ToList()); // weights untouched
        Assert.All(trainer.Model.Parameters(), p => Assert.Null(p.Grad));

        scaler.Restore(1024, 0); // in range: the next step updates
        trainer.TrainStep(1);
        Assert.Equal(1, trainer.Optimizer.StepCount);
        Assert.Equal(1, scaler.GoodSteps);
        Assert.NotEqual(before, trainer.Model.Parameters().Select(p => p.ToArray<float>()).ToList());
    }

    [Fact]
    public void A_lora_finetune_with_offloaded_adamw_under_bf16_autocast_resumes_exactly()
    {
        string data = Path.Combine(_dir, "text.txt");
        File.WriteAllText(data, File.ReadAllText(RepoPaths.Of("data", "tinyshakespeare.txt"))[..4000]);
        string[] Finetune(string outDir, int iters) =>
        [
            "finetune", "--model", RepoPaths.Stories260K, "--tokenizer", RepoPaths.Tok512, "--data", data, "--out-dir", outDir, "--batch-size", "2",
            "--block-size", "16", "--lora-r", "2", "--eval-iters", "1", "--eval-interval", "2", "--log-interval", "1", "--lr", "1e-2",
            "--iters", iters.ToString(), "--optim", "offload", "--autocast", "bf16", "--device", "cpu",
        ];
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        Ok(Finetune(a, 4));
        Ok(Finetune(b, 2));
        Ok("finetune", "--resume", "--out-dir", b, "--iters", "4", "--device", "cpu");
        AssertSameRun(a, b, Path.Combine("{}", PeftAdapter.WeightsFile));
        AssertSameRun(a, b, Path.Combine("{}", FinetuneTrainer.CheckpointFile));
    }
}
