using ManagedTensor.Models.Data;
using ManagedTensor.Models.Diffusion;
using ManagedTensor.Models.Vision;
using ManagedTensor.Optim;
using ManagedTensor.Tests.Data;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// The path around the denoiser, checked end to end (issue 18: samples came out as textures): what a training step
/// feeds the network, which weights the sampler reads from a checkpoint, and that the judge and the PNG writer see
/// pixels in the range training used.
/// </summary>
public sealed class DiffusionTrainingPathTests
{
    private sealed class Quiet : IImageTrainObserver
    {
        public void OnStart(int step, int total) { }
        public void OnStep(int step, double loss, double lr, double imagesPerSecond, double msPerStep) { }
        public void OnMessage(string line) { }
    }

    private static readonly DiffusionConfig TinyUNet = new(UnetChannels: 8, ChannelMults: "1,2", Heads: 2, TrainSteps: 50);

    /// <summary>TinyFashion image <paramref name="index"/> (label index % 10) in [-1, 1], padded with black to 32x32.</summary>
    private static double[] Expected(int index)
    {
        var px = TinyFashion.Image(index % 10, index / 10);
        var v = Enumerable.Repeat(-1.0, 32 * 32).ToArray();
        for (int r = 0; r < 28; r++)
            for (int c = 0; c < 28; c++)
                v[(r + 2) * 32 + c + 2] = px[r * 28 + c] / 127.5 - 1;
        return v;
    }

    [Fact]
    public void A_training_batch_pairs_each_image_with_its_label_and_noises_it_as_the_sampler_denoises()
    {
        string data = TinyFashion.Write(TinyFashion.TempDir("diff-batch"), 40, 10);
        var train = new DiffusionTrainConfig(OutDir: TinyFashion.TempDir("diff-batch-out"), DataDir: data, BatchSize: 64);
        var b = DiffusionTrainer.Create(TinyUNet, train, Device.Cpu).DrawBatch();
        var abar = new NoiseSchedule("linear", 50).AlphaBar;
        var (x0, eps, xt, target) = (b.X0.ToDoubleArray(), b.Eps.ToDoubleArray(), b.Xt.ToDoubleArray(), b.Target.ToDoubleArray());
        const int n = 32 * 32;
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(b.Index[i] % 10, b.Labels[i]);                       // TinyFashion's label of image j is j % 10
            ManagedTensor.Tests.TestUtil.AssertClose(Expected(b.Index[i]), x0[(i * n)..((i + 1) * n)], 1e-6, 1e-6, $"image {i}");
            Assert.InRange(b.T[i], 0, 49);                                     // 0-based, as Sampler.Timesteps
            double a = Math.Sqrt(abar[b.T[i]]), s = Math.Sqrt(1 - abar[b.T[i]]);
            for (int j = i * n; j < (i + 1) * n; j++)
            {
                Assert.True(Math.Abs(a * x0[j] + s * eps[j] - xt[j]) < 1e-5, $"image {i} t {b.T[i]} pixel {j - i * n}: x_t {xt[j]}, expected {a * x0[j] + s * eps[j]} = {a} * {x0[j]} + {s} * {eps[j]}");
                Assert.Equal(eps[j], target[j]);                               // eps-prediction
            }
        }
        Assert.True(b.T.Min() < 10 && b.T.Max() >= 40, $"t spans {b.T.Min()}..{b.T.Max()}: not uniform over 0..49");
        double mean = eps.Average(), var = eps.Average(e => (e - mean) * (e - mean));
        Assert.InRange(mean, -0.02, 0.02);
        Assert.InRange(var, 0.97, 1.03);
        double corr = Enumerable.Range(0, n).Average(j => eps[j] * eps[n + j]);
        Assert.InRange(corr, -0.1, 0.1);                                       // each image gets its own noise
    }

    [Fact]
    public void The_checkpoint_keeps_the_ema_and_the_sampler_loads_it()
    {
        string data = TinyFashion.Write(TinyFashion.TempDir("diff-ema"), 40, 10);
        string dir = TinyFashion.TempDir("diff-ema-out");
        var tr = DiffusionTrainer.Create(TinyUNet, new DiffusionTrainConfig(OutDir: dir, DataDir: data, MaxSteps: 4, BatchSize: 32, SampleEvery: 4, SampleSteps: 1, WarmupSteps: 0, LearningRate: 1e-2), Device.Cpu);
        tr.Run(new Quiet());
        // Classifier-free guidance needs the null class trained: labels are dropped to it in training, so its row moved
        // (from the third step on: the zero-initialized output convs pass no gradient back before that).
        var fresh = Denoiser.Create(TinyUNet, new Generator(tr.Config.Seed), Device.Cpu);
        var nullRow = (Denoiser d) => ((UNet)d).ClassEmbed.Table.Weight.Narrow(0, 10, 1).ToDoubleArray();
        Assert.NotEqual(nullRow(fresh), nullRow(tr.Model));
        var trained = tr.Model.NamedParameters().ToDictionary(p => p.Name, p => p.Tensor.ToDoubleArray());
        tr.Ema.Swap();
        var ema = tr.Model.NamedParameters().ToDictionary(p => p.Name, p => p.Tensor.ToDoubleArray());
        tr.Ema.Swap();
        var forSampling = DiffusionCheckpoint.LoadModel(dir, Device.Cpu);
        var raw = DiffusionCheckpoint.LoadModel(dir, Device.Cpu, ema: false);
        Assert.False(forSampling.Training);
        Assert.Contains(ema, kv => !kv.Value.SequenceEqual(trained[kv.Key]));   // four updates, decay 0.1 to 0.25: not the weights
        foreach (var (name, p) in forSampling.NamedParameters()) Assert.Equal(ema[name], p.ToDoubleArray());
        foreach (var (name, p) in raw.NamedParameters()) Assert.Equal(trained[name], p.ToDoubleArray());
    }

    [Fact]
    public void The_judge_and_the_png_writer_see_real_images_in_the_training_range()
    {
        var train = FashionMnist.Load(TinyFashion.Write(TinyFashion.TempDir("diff-judge"), 40, 10), "train");
        var clf = new FashionClassifier(new ClassifierConfig(Width: 4, Hidden: 8), new Generator(5), Device.Cpu);
        clf.Eval();
        // Every training image once (4 of each class), padded to 32 as the denoiser sees them, cropped back by the judge:
        // the features are those of the images themselves (FID against the same set ~0) and so are the predictions.
        var r = DiffusionEval.RunOnRealImages(new DiffusionConfig(), clf, train, train, 40);
        Assert.InRange(r.Fid, -1e-6, 1e-6);
        var all = Enumerable.Range(0, 40).ToArray();
        var direct = clf.Predict(train.Batch(all, Device.Cpu, -1, 1));
        Assert.Equal(all.Count(i => direct[i] == train.Labels[i]) / 40.0, r.ClassConsistency, 9);

        // The PNG grid maps [-1, 1] back to the file's bytes: pixel (r, c) of image i, zoomed 2x, is its byte.
        string png = Path.Combine(TinyFashion.TempDir("diff-png"), "real.png");
        GrayImage.SaveGrid(png, train.Batch([3, 17], Device.Cpu, -1, 1, pad: 2), columns: 2);
        using var image = Image.Load<L8>(png);
        for (int i = 0; i < 2; i++)
        {
            var px = TinyFashion.Image(new[] { 3, 17 }[i] % 10, new[] { 3, 17 }[i] / 10);
            int x0 = 2 + i * (64 + 2), y0 = 2;
            for (int row = 0; row < 28; row++)
                for (int col = 0; col < 28; col++)
                    Assert.Equal(px[row * 28 + col], image[x0 + 2 * (col + 2), y0 + 2 * (row + 2)].PackedValue);
            Assert.Equal(0, image[x0, y0].PackedValue);                        // the padding is black
        }
    }
}

/// <summary>
/// Issue 18's overfit check: a small U-Net trained on one fixed batch must give back those images when sampled. Two
/// 8x8 images (a bar across the top for class 0, down the left for class 1, white on black) and the training step
/// of <see cref="DiffusionTrainer"/> (uniform t, x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, eps regression, labels
/// dropped to the null class 10 % of the time, AdamW); then DDIM from fresh noise, guided and not. If this fails the
/// fault is in the model or the training step; if it passes, poor samples of a full run are a matter of budget.
/// </summary>
public sealed class DiffusionOverfitTests
{
    private static Tensor Pattern()
    {
        var v = Enumerable.Repeat(-1f, 2 * 8 * 8).ToArray();
        for (int i = 0; i < 8; i++)
        {
            v[1 * 8 + i] = v[2 * 8 + i] = 1;                 // class 0: rows 1-2
            v[64 + i * 8 + 1] = v[64 + i * 8 + 2] = 1;       // class 1: columns 1-2
        }
        return Tensor.FromArray(v, [2, 1, 8, 8]);
    }

    [Fact]
    public void A_unet_trained_on_one_batch_samples_its_images()
    {
        var cfg = new DiffusionConfig(ImageSize: 8, Classes: 2, UnetChannels: 16, ChannelMults: "1,2", Heads: 2, TrainSteps: 100);
        var net = Denoiser.Create(cfg, new Generator(1), Device.Cpu);
        var schedule = new NoiseSchedule(cfg.Schedule, cfg.TrainSteps);
        var opt = new ManagedTensor.Optim.AdamW(net.NamedParameters(), 3e-3, weightDecay: 0);
        var x0 = Tensor.Cat(Enumerable.Repeat(Pattern(), 4).ToArray(), 0);   // (8, 1, 8, 8), classes 0, 1, 0, 1, ...
        int[] labels = [0, 1, 0, 1, 0, 1, 0, 1];
        var draw = new Generator(2);
        var noise = new Generator(3);
        double loss = 0;
        for (int step = 0; step < 300; step++)
        {
            var t = Enumerable.Range(0, 8).Select(_ => draw.NextInt(cfg.TrainSteps)).ToArray();
            var eps = Tensor.Randn(x0.Shape, noise);
            var output = net.Forward(schedule.AddNoise(x0, eps, t), t.Select(v => (double)v).ToArray(), labels, draw);
            var l = (output - eps).Square().Mean();
            l.Backward();
            loss = l.Item();
            GradClip.ClipGradNorm(net.Parameters(), 1.0);
            opt.Step();
            opt.ZeroGrad();
        }
        Assert.True(loss < 0.1, $"loss {loss} after 300 steps on one batch");
        var want = Pattern().ToDoubleArray();
        foreach (double guidance in new[] { 1.0, 3.0 })
        {
            var images = Sampler.Sample(net, [0, 1, 0, 1], new SamplerOptions("ddim", 20, guidance, 0, 5)).ToDoubleArray();
            for (int i = 0; i < 4; i++)
            {
                double mse = Enumerable.Range(0, 64).Average(j => Math.Pow(images[i * 64 + j] - want[(i % 2) * 64 + j], 2));
                Assert.True(mse < 0.1, $"cfg {guidance}: sample {i} (class {i % 2}) is off its training image by mean squared error {mse}");
            }
        }
    }
}
