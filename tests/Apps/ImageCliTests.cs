using ManagedTensor.Models.Vision;
using ManagedTensor.Tests.Data;
using Xunit;

namespace ManagedTensor.Tests.Apps;

/// <summary>`mt classify` and `mt diffuse` end to end on tiny hand-made Fashion-MNIST files, and their input errors.</summary>
public sealed class ImageCliTests
{
    private static readonly string DataDir = TinyFashion.Write(TinyFashion.TempDir("cli-data"), 60, 20);

    [Fact]
    public void Classify_trains_saves_and_predicts_an_image()
    {
        string o = TinyFashion.TempDir("cli-clf");
        var r = Mt.Run("classify", "train", "--data", DataDir, "--out-dir", o, "--epochs", "2", "--batch-size", "10", "--width", "4", "--lr", "0.01");
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("test accuracy", r.Out);
        Assert.True(File.Exists(Path.Combine(o, "classifier.safetensors")) && File.Exists(Path.Combine(o, "loss.png")), r.ToString());
        string png = Path.Combine(o, "seven.png");
        var img = Tensor.FromArray(TinyFashion.Image(7, 0).Select(v => (float)(v / 127.5 - 1)).ToArray(), [1, 1, 28, 28]);
        GrayImage.SaveGrid(png, img, 1, zoom: 1);
        var p = Mt.Run("classify", "predict", png, "--model", o);
        Assert.True(p.Code == 0, p.ToString());
        Assert.Matches(@"seven\.png: \d ", p.Out);
        var bad = Mt.Run("classify", "predict", Path.Combine(o, "loss.png"), "--model", Path.Combine(o, "nothing"));
        Assert.Equal(1, bad.Code);
        Assert.Contains("no classifier at", bad.Err);
    }

    [Fact]
    public void Diffuse_trains_samples_evaluates_and_refuses_bad_input()
    {
        string o = TinyFashion.TempDir("cli-dit"), clf = TinyFashion.TempDir("cli-judge");
        var r = Mt.Run("diffuse", "train", "--arch", "dit", "--data", DataDir, "--out-dir", o, "--max-steps", "2", "--batch-size", "4",
            "--hidden", "16", "--depth", "1", "--patch", "8", "--sample-every", "2", "--sample-steps", "2");
        Assert.True(r.Code == 0, r.ToString());
        Assert.True(File.Exists(Path.Combine(o, "samples_000002.png")) && File.Exists(Path.Combine(o, "loss.png")), r.ToString());
        string grid = Path.Combine(o, "grid.png");
        var s = Mt.Run("diffuse", "sample", "--model", o, "--class", "7", "--steps", "2", "--count", "3", "--out", grid);
        Assert.True(s.Code == 0 && File.Exists(grid), s.ToString());

        Assert.Contains("--class 10: not a class id (0..9)", Mt.Run("diffuse", "sample", "--model", o, "--class", "10", "--out", grid).Err);
        Assert.Contains("--steps 0", Mt.Run("diffuse", "sample", "--model", o, "--steps", "0", "--out", grid).Err);
        var cfg = Mt.Run("diffuse", "sample", "--model", o, "--cfg", "strong", "--out", grid);
        Assert.Equal(1, cfg.Code);
        Assert.Contains("--cfg: 'strong' is not", cfg.Err);
        Assert.Contains("--lr", Mt.Run("diffuse", "train", "--resume", "--out-dir", o, "--lr", "0.1").Err);
        Assert.Contains("holds a run", Mt.Run("diffuse", "train", "--data", DataDir, "--out-dir", o).Err);
        Assert.Contains("--ema 1: must be in [0, 1)", Mt.Run("diffuse", "train", "--data", DataDir, "--out-dir", o, "--force", "--ema", "1").Err);

        Assert.Equal(0, Mt.Run("classify", "train", "--data", DataDir, "--out-dir", clf, "--epochs", "1", "--batch-size", "10", "--width", "4").Code);
        var e = Mt.Run("diffuse", "eval", "--model", o, "--classifier", clf, "--data", DataDir, "--count", "10", "--steps", "2", "--floor");
        Assert.True(e.Code == 0, e.ToString());
        Assert.Contains("class consistency", e.Out);
        Assert.Contains("not Inception", e.Out);
        Assert.Contains("floor", e.Out);
        var real = Mt.Run("diffuse", "eval", "--model", o, "--classifier", clf, "--data", DataDir, "--count", "10", "--real");
        Assert.True(real.Code == 0, real.ToString());
        Assert.Contains("10 real training images in place of samples (padded to 32", real.Out);
    }
}
