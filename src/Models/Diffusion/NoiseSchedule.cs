namespace ManagedTensor.Models.Diffusion;

/// <summary>What the denoiser is trained to predict: the noise (DDPM) or the velocity v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans and Ho 2022).</summary>
public enum Prediction
{
    Epsilon,
    V,
}

/// <summary>
/// The forward (noising) process of DDPM over T steps, held in double on the host:
///   q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),  abar_t = prod_{s &lt;= t} (1 - beta_s),  t = 0..T-1.
/// "linear": beta from 1e-4 to 0.02 linearly, DDPM's schedule for T = 1000 (scaled by 1000/T for other T, as
/// improved DDPM does, so the total noise stays comparable). "cosine": abar_t = f(t+1)/f(0), f(u) = cos^2(((u/T) + s)/(1 + s) * pi/2),
/// s = 0.008, betas clipped at 0.999 (Nichol and Dhariwal 2021).
/// The conversions between the network's output and (x0, eps) are here so DDPM and DDIM share them.
/// </summary>
public sealed class NoiseSchedule
{
    public NoiseSchedule(string kind, int steps)
    {
        if (steps < 1) throw new ArgumentException($"noise schedule: {steps} steps, need at least 1");
        Kind = kind;
        Steps = steps;
        Betas = kind switch
        {
            "linear" => Linear(steps),
            "cosine" => Cosine(steps),
            _ => throw new UserErrorException($"--schedule {kind}: expected linear or cosine"),
        };
        AlphaBar = new double[steps];
        double prod = 1;
        for (int t = 0; t < steps; t++) AlphaBar[t] = prod *= 1 - Betas[t];
    }

    public string Kind { get; }
    public int Steps { get; }
    public double[] Betas { get; }
    public double[] AlphaBar { get; }

    private static double[] Linear(int steps)
    {
        double scale = 1000.0 / steps, lo = scale * 1e-4, hi = scale * 0.02;
        return Enumerable.Range(0, steps).Select(i => steps == 1 ? lo : lo + (hi - lo) * i / (steps - 1)).ToArray();
    }

    private static double[] Cosine(int steps)
    {
        const double s = 0.008;
        double F(double u) => Math.Pow(Math.Cos((u / steps + s) / (1 + s) * Math.PI / 2), 2);
        return Enumerable.Range(0, steps).Select(t => Math.Min(1 - F(t + 1) / F(t), 0.999)).ToArray();
    }

    /// <summary>Per-sample (B, 1, 1, 1) column of <paramref name="f"/>(t_b), to broadcast over images.</summary>
    public static Tensor PerSample(IReadOnlyList<int> t, Func<int, double> f, Device device) =>
        Tensor.FromArray(t.Select(ti => (float)f(ti)).ToArray(), [t.Count, 1, 1, 1], device);

    /// <summary>x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for each sample's t.</summary>
    public Tensor AddNoise(Tensor x0, Tensor eps, int[] t) =>
        x0 * PerSample(t, i => Math.Sqrt(AlphaBar[i]), x0.Device) + eps * PerSample(t, i => Math.Sqrt(1 - AlphaBar[i]), x0.Device);

    /// <summary>The training target: eps itself, or v = sqrt(abar) eps - sqrt(1 - abar) x0.</summary>
    public Tensor Target(Prediction p, Tensor x0, Tensor eps, int[] t) => p == Prediction.Epsilon ? eps
        : eps * PerSample(t, i => Math.Sqrt(AlphaBar[i]), x0.Device) - x0 * PerSample(t, i => Math.Sqrt(1 - AlphaBar[i]), x0.Device);

    /// <summary>
    /// (x0, eps) implied by the network output <paramref name="output"/> at x_t, all samples at the same t:
    ///   eps-prediction: x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
    ///   v-prediction:   x0 = sqrt(abar) x_t - sqrt(1 - abar) v,  eps = sqrt(1 - abar) x_t + sqrt(abar) v
    /// x0 is clipped to [-1, 1] (the data range) and eps recomputed from it, as DDPM's sampler does.
    /// </summary>
    public (Tensor X0, Tensor Eps) Split(Prediction p, Tensor xt, Tensor output, int t, bool clip = true)
    {
        double a = Math.Sqrt(AlphaBar[t]), s = Math.Sqrt(1 - AlphaBar[t]);
        var x0 = p == Prediction.Epsilon ? (xt - output * s) / a : xt * a - output * s;
        if (!clip) return (x0, p == Prediction.Epsilon ? output : xt * s + output * a);
        x0 = x0.Clamp(-1, 1);
        return (x0, (xt - x0 * a) / s);
    }
}
