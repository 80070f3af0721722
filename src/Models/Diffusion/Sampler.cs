namespace ManagedTensor.Models.Diffusion;

/// <summary>How to sample: DDPM's ancestral steps or DDIM's (deterministic with eta 0), over Steps of the T training steps, guidance scale Cfg.</summary>
public sealed record SamplerOptions(string Method = "ddim", int Steps = 50, double Cfg = 3.0, double Eta = 0, ulong Seed = 0)
{
    public void Validate(int trainSteps)
    {
        if (Method is not ("ddim" or "ddpm")) throw new UserErrorException($"--sampler {Method}: expected ddim or ddpm");
        if (Steps < 1 || Steps > trainSteps) throw new UserErrorException($"--steps {Steps}: must be between 1 and the model's {trainSteps} diffusion steps");
        if (!double.IsFinite(Cfg) || Cfg < 0) throw new UserErrorException($"--cfg {Cfg}: the guidance scale must be a finite number >= 0 (1: conditional only, 0: unconditional)");
        if (!(Eta >= 0 && Eta <= 1)) throw new UserErrorException($"--eta {Eta}: must be in [0, 1]");
    }
}

/// <summary>
/// Reverse diffusion from pure noise. With S of the T steps, t_i = round((i + 1) T / S) - 1 in descending order
/// (respaced DDPM and DDIM both skip steps this way). At each step the network's output gives (x0, eps) (clipped x0,
/// <see cref="NoiseSchedule.Split"/>); from abar_t to abar_prev (1 after the last step):
///   DDPM (ancestral, posterior of q(x_prev | x_t, x0)):
///     x_prev = sqrt(abar_prev) beta / (1 - abar_t) x0 + sqrt(alpha) (1 - abar_prev) / (1 - abar_t) x_t + sigma z,
///     alpha = abar_t / abar_prev, beta = 1 - alpha, sigma^2 = beta (1 - abar_prev) / (1 - abar_t)
///   DDIM (Song et al. 2021), sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev):
///     x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z
/// Classifier-free guidance runs the batch twice, with the labels and with the null class, and mixes the outputs:
///   out = out_null + cfg (out_label - out_null)   (cfg 1: the conditional model alone; 0: the unconditional).
/// </summary>
public static class Sampler
{
    public static int[] Timesteps(int trainSteps, int steps) =>
        Enumerable.Range(0, steps).Select(i => (int)Math.Round((double)(i + 1) * trainSteps / steps) - 1).Reverse().ToArray();

    /// <summary>Images (B, C, S, S) in [-1, 1] for <paramref name="labels"/> (the model's class count = no class).</summary>
    public static Tensor Sample(Denoiser model, int[] labels, SamplerOptions o, Action<int, int>? progress = null)
    {
        var cfg = model.Config;
        o.Validate(cfg.TrainSteps);
        var schedule = new NoiseSchedule(cfg.Schedule, cfg.TrainSteps);
        var pred = cfg.PredictionKind;
        var device = model.Parameters().First().Device;
        var gen = new Generator(o.Seed);
        int b = labels.Length;
        using var noGrad = GradMode.NoGrad();
        bool wasTraining = model.Training;
        model.Eval();
        var x = Tensor.Randn([b, cfg.Channels, cfg.ImageSize, cfg.ImageSize], gen, device: device);
        var ts = Timesteps(cfg.TrainSteps, o.Steps);
        bool guided = o.Cfg != 1 && labels.Any(l => l != cfg.Classes);
        for (int i = 0; i < ts.Length; i++)
        {
            int t = ts[i];
            double abarPrev = i + 1 < ts.Length ? schedule.AlphaBar[ts[i + 1]] : 1.0;
            var output = Guided(model, x, t, labels, guided ? o.Cfg : 1);
            var (x0, eps) = schedule.Split(pred, x, output, t);
            bool last = i + 1 == ts.Length;
            Tensor? z = last ? null : Tensor.Randn(x.Shape, gen, device: device);
            x = o.Method == "ddpm"
                ? DdpmStep(x, x0, schedule.AlphaBar[t], abarPrev, z)
                : DdimStep(x0, eps, schedule.AlphaBar[t], abarPrev, o.Eta, z);
            progress?.Invoke(i + 1, ts.Length);
        }
        if (wasTraining) model.Train();
        return x.Clamp(-1, 1);
    }

    /// <summary>The network output at step t, guided: out_null + cfg (out_label - out_null) (one batch of 2B).</summary>
    public static Tensor Guided(Denoiser model, Tensor x, int t, int[] labels, double cfg)
    {
        int b = labels.Length;
        if (cfg == 1) return model.Forward(x, Enumerable.Repeat((double)t, b).ToArray(), labels);
        var both = model.Forward(Tensor.Cat([x, x], 0), Enumerable.Repeat((double)t, 2 * b).ToArray(),
            [.. labels, .. Enumerable.Repeat(model.Config.Classes, b)]);
        var cond = both.Narrow(0, 0, b);
        var uncond = both.Narrow(0, b, b);
        return uncond + (cond - uncond) * cfg;
    }

    /// <summary>One ancestral step from x_t (its x0 estimate given) to x_prev; <paramref name="z"/> null on the last step.</summary>
    public static Tensor DdpmStep(Tensor xt, Tensor x0, double abarT, double abarPrev, Tensor? z)
    {
        double alpha = abarT / abarPrev, beta = 1 - alpha;
        var mean = x0 * (Math.Sqrt(abarPrev) * beta / (1 - abarT)) + xt * (Math.Sqrt(alpha) * (1 - abarPrev) / (1 - abarT));
        if (z is null) return mean;
        double sigma = Math.Sqrt(beta * (1 - abarPrev) / (1 - abarT));
        return mean + z * sigma;
    }

    /// <summary>One DDIM step (eta 0: deterministic; <paramref name="z"/> is used only when eta > 0).</summary>
    public static Tensor DdimStep(Tensor x0, Tensor eps, double abarT, double abarPrev, double eta, Tensor? z)
    {
        double sigma = eta * Math.Sqrt((1 - abarPrev) / (1 - abarT)) * Math.Sqrt(1 - abarT / abarPrev);
        var x = x0 * Math.Sqrt(abarPrev) + eps * Math.Sqrt(Math.Max(0, 1 - abarPrev - sigma * sigma));
        return z is not null && sigma > 0 ? x + z * sigma : x;
    }
}
