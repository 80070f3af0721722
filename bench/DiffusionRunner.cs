using ManagedTensor.Models.Diffusion;
using ManagedTensor.Optim;

namespace ManagedTensor.Bench;

/// <summary>
/// `diffusion --arch unet|dit [--mode train|sample] [--batch N] [--iters N] [--warmup N] [--profile]`: our side of
/// bench/diffusion_vs_torch.sh, the `mt diffuse train` default models (<see cref="DiffusionConfig"/>'s defaults:
/// 1x32x32 images, 10 classes, 1000 linear-schedule steps, eps prediction; U-Net 32 channels, mults 1,2,2; DiT patch 4,
/// width 128, depth 6) on the CPU.
///   train:  one step as <see cref="DiffusionTrainer.TrainStep"/> takes it, batch 64: x0 (seeded uniform noise in
///           [-1, 1] standing in for padded Fashion-MNIST: the data loader is not what is measured), t uniform in
///           0..999, labels and their 10% drop to the null class, eps ~ N(0, I), x_t, forward, MSE against eps,
///           backward, gradient clipping at 1.0, AdamW (lr 3e-4, no decay), the EMA update (0.999).
///   sample: one denoiser call of `mt diffuse sample` (20 images, guidance 3: a batch of 40 rows, the labels and the
///           null class) and the DDIM update, no gradients; batch = the image count.
/// Each iteration is timed alone (<see cref="StepTimer"/>). Prints one line: params (the script checks PyTorch's
/// model has the same count), ms_per_iter, images_per_s, cpu_ms_per_iter, peak_rss_mb.
/// </summary>
public static class DiffusionRunner
{
    public static void Run(string[] args)
    {
        string arch = "unet", mode = "train";
        int batch = -1, iters = 4, warmup = 1;
        bool profile = false;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--arch") arch = args[++i];
            else if (args[i] == "--mode") mode = args[++i];
            else if (args[i] == "--batch") batch = int.Parse(args[++i]);
            else if (args[i] == "--iters") iters = int.Parse(args[++i]);
            else if (args[i] == "--warmup") warmup = int.Parse(args[++i]);
            else if (args[i] == "--profile") profile = true;
            else throw new ArgumentException($"diffusion: unknown argument '{args[i]}' (expected --arch unet|dit, --mode train|sample, --batch N, --iters N, --warmup N, --profile)");
        }
        if (mode is not ("train" or "sample")) throw new ArgumentException($"diffusion: --mode {mode}: expected train or sample");
        if (batch < 0) batch = mode == "train" ? new DiffusionTrainConfig().BatchSize : 20;
        if (batch < 1) throw new ArgumentException($"diffusion: --batch {batch} must be at least 1");

        var config = new DiffusionConfig(Arch: arch);
        var model = Denoiser.Create(config, new Generator(0), Device.Cpu);
        var schedule = new NoiseSchedule(config.Schedule, config.TrainSteps);
        int[] shape = [batch, config.Channels, config.ImageSize, config.ImageSize];
        var draw = new Generator(1);
        var noise = new Generator(2);
        var profiler = profile ? new OpProfiler(Backends.For(Device.Cpu)) { ByShape = true } : null;
        double loss = double.NaN;
        StepTimer.Result r;
        if (mode == "train")
        {
            var optimizer = new AdamW(model.NamedParameters(), 3e-4, 0.9, 0.999, 1e-8, weightDecay: 0);
            var ema = new Ema(model, 0.999);
            model.Train();
            r = StepTimer.Run($"diffusion {arch} train", iters, warmup, profiler, () =>
            {
                var t = Enumerable.Range(0, batch).Select(_ => draw.NextInt(config.TrainSteps)).ToArray();
                var labels = Enumerable.Range(0, batch).Select(_ => draw.NextInt(config.Classes)).ToArray();
                var x0 = Tensor.Rand(shape, draw, -1, 1);
                var eps = Tensor.Randn(shape, noise);
                var xt = schedule.AddNoise(x0, eps, t);
                var output = model.Forward(xt, t.Select(v => (double)v).ToArray(), labels, draw);
                var l = (output - eps).Square().Mean();
                l.Backward();
                loss = l.Item();
                GradClip.ClipGradNorm(model.Parameters(), 1.0);
                optimizer.Step();
                optimizer.ZeroGrad();
                ema.Update();
            });
        }
        else
        {
            var labels = Enumerable.Range(0, batch).Select(i => i % config.Classes).ToArray();
            var x = Tensor.Randn(shape, noise);
            const int T = 500, Prev = 450;                 // a DDIM step in the middle of the schedule
            model.Eval();
            r = StepTimer.Run($"diffusion {arch} sample", iters, warmup, profiler, () =>
            {
                using var noGrad = GradMode.NoGrad();
                var output = Sampler.Guided(model, x, T, labels, 3.0);
                var (x0, e) = schedule.Split(config.PredictionKind, x, output, T);
                Sampler.DdimStep(x0, e, schedule.AlphaBar[T], schedule.AlphaBar[Prev], 0, null).ToDoubleArray();
            });
        }
        Console.WriteLine($"ours arch={arch} mode={mode} batch={batch} threads={Environment.ProcessorCount} iters={r.Timed} params={model.ParameterCount()} " +
                          $"ms_per_iter={r.MsPerIter:F1} images_per_s={batch * 1000 / r.MsPerIter:F2} loss={loss:F4} peak_rss_mb={StepTimer.PeakRssMb():F0} cpu_ms_per_iter={r.CpuMsPerIter:F1}");
    }
}
