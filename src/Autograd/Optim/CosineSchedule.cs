namespace ManagedTensor.Optim;

/// <summary>
/// nanoGPT's learning-rate schedule: linear warm-up to <see cref="MaxLr"/> over <see cref="WarmupIters"/>
/// steps, cosine decay to <see cref="MinLr"/> at <see cref="DecayIters"/>, then constant:
///   it &lt; warmup:        lr = max_lr (it + 1) / (warmup + 1)
///   it &gt; decay_iters:   lr = min_lr
///   otherwise:          r = (it - warmup) / (decay_iters - warmup), lr = min_lr + (1 + cos(pi r)) / 2 (max_lr - min_lr)
/// </summary>
public sealed record CosineSchedule(double MaxLr, double MinLr, int WarmupIters, int DecayIters)
{
    public double LearningRate(int it)
    {
        if (it < WarmupIters) return MaxLr * (it + 1) / (WarmupIters + 1);
        if (it > DecayIters) return MinLr;
        double ratio = DecayIters == WarmupIters ? 1 : (double)(it - WarmupIters) / (DecayIters - WarmupIters);
        return MinLr + 0.5 * (1 + Math.Cos(Math.PI * ratio)) * (MaxLr - MinLr);
    }
}
