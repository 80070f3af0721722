namespace ManagedTensor.Optim;

/// <summary>
/// Dynamic loss scaling for float16 autocast, as torch.cuda.amp.GradScaler. float16 keeps 5 exponent bits: gradients
/// below about 6e-8 flush to zero. Multiplying the loss by S (65536 at the start) multiplies every gradient by S and lifts
/// the small ones into range; <see cref="Unscale"/> divides them by S again (in float32, the master gradients) before
/// clipping and the step. Too large an S overflows some gradient to inf or NaN: that step is skipped (the weights and the
/// optimizer's moments are untouched), and S is halved. After <see cref="GrowthInterval"/> good steps in a row S doubles,
/// so it settles just under overflow. bfloat16 has float32's exponent range and needs none of this.
/// <see cref="Scale"/> and <see cref="GoodSteps"/> are a run's state: a checkpoint saves them for an exact resume.
/// </summary>
public sealed class GradScaler
{
    public const double DefaultInitScale = 65536.0;
    public const int DefaultGrowthInterval = 2000;

    public GradScaler(double initScale = DefaultInitScale, double growthFactor = 2.0, double backoffFactor = 0.5, int growthInterval = DefaultGrowthInterval)
    {
        if (!double.IsFinite(initScale) || initScale <= 0) throw new ArgumentOutOfRangeException(nameof(initScale), initScale, "the loss scale must be a finite number > 0");
        if (!(growthFactor > 1)) throw new ArgumentOutOfRangeException(nameof(growthFactor), growthFactor, "must be > 1");
        if (!(backoffFactor is > 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(backoffFactor), backoffFactor, "must be in (0, 1)");
        if (growthInterval < 1) throw new ArgumentOutOfRangeException(nameof(growthInterval), growthInterval, "must be at least 1");
        Scale = initScale;
        GrowthFactor = growthFactor;
        BackoffFactor = backoffFactor;
        GrowthInterval = growthInterval;
    }

    /// <summary>The factor the loss is multiplied by before backward.</summary>
    public double Scale { get; private set; }

    /// <summary>Steps in a row without an overflow since the scale last changed.</summary>
    public int GoodSteps { get; private set; }

    public double GrowthFactor { get; }
    public double BackoffFactor { get; }
    public int GrowthInterval { get; }

    /// <summary>Restores a run's scale and good-step count (from a checkpoint).</summary>
    public void Restore(double scale, int goodSteps)
    {
        if (!double.IsFinite(scale) || scale <= 0) throw new ArgumentOutOfRangeException(nameof(scale), scale, "the loss scale must be a finite number > 0");
        if (goodSteps < 0 || goodSteps >= GrowthInterval) throw new ArgumentOutOfRangeException(nameof(goodSteps), goodSteps, $"must be in [0, {GrowthInterval})");
        Scale = scale;
        GoodSteps = goodSteps;
    }

    /// <summary>
    /// Divides every gradient of <paramref name="parameters"/> by <see cref="Scale"/> (in place) and returns whether all of
    /// them are finite; when one is not, the step must be skipped (<see cref="Update"/> with false).
    /// </summary>
    public bool Unscale(IEnumerable<Tensor> parameters)
    {
        using var noGrad = GradMode.NoGrad();
        double inv = 1.0 / Scale;
        bool finite = true;
        foreach (var p in parameters)
        {
            if (p.Grad is not { } g) continue;
            p.Grad = g.MulScalar(inv);
            // inf * 0 is NaN, so one sum tells both: it is finite only when every value is.
            if (finite && !double.IsFinite(p.Grad.MulScalar(0).Sum().To(DType.F64).Item())) finite = false;
        }
        return finite;
    }

    /// <summary>After a step: halves the scale when it overflowed (<paramref name="stepped"/> false), else counts a good step and doubles it every <see cref="GrowthInterval"/>.</summary>
    public void Update(bool stepped)
    {
        if (!stepped)
        {
            Scale *= BackoffFactor;
            GoodSteps = 0;
            return;
        }
        if (++GoodSteps < GrowthInterval) return;
        Scale *= GrowthFactor;
        GoodSteps = 0;
    }
}
