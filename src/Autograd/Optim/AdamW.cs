namespace ManagedTensor.Optim;

/// <summary>
/// AdamW (Loshchilov and Hutter): Adam with weight decay applied to the weights directly rather than
/// through the gradient. As nanoGPT's configure_optimizers, decay applies only to parameters of rank 2
/// or more (matmul weights and embeddings); biases and norm gains are not decayed. Each step is one
/// fused op per parameter (<see cref="Tensor.AdamWStep_"/>), same order of operations as torch.optim.AdamW.
/// Only parameters that require a gradient are kept (moments cost 2x their size): a frozen base costs nothing here.
/// </summary>
public sealed class AdamW : IStatefulOptimizer
{
    private readonly List<Slot> _slots;

    private sealed record Slot(string Name, Tensor Param, Tensor M, Tensor V, bool Decay);

    public AdamW(IEnumerable<(string Name, Tensor Tensor)> parameters, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01)
    {
        CheckHyperparameters(lr, beta1, beta2);
        LearningRate = lr;
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        WeightDecay = weightDecay;
        // Frozen parameters (RequiresGrad false: a LoRA base) get no moments: state only for what is trained.
        _slots = parameters.Where(p => p.Tensor.RequiresGrad).Select(p => new Slot(p.Name, p.Tensor, p.Tensor.ZerosLike(), p.Tensor.ZerosLike(), p.Tensor.Rank >= 2)).ToList();
    }

    /// <summary>The range every AdamW (this one, <see cref="OffloadedAdamW"/>) accepts: lr >= 0 and betas in [0, 1) (a beta of 1 never forgets and divides the bias correction by zero).</summary>
    internal static void CheckHyperparameters(double lr, double beta1, double beta2)
    {
        if (lr < 0) throw new ArgumentOutOfRangeException(nameof(lr), lr, "learning rate must be >= 0");
        if (beta1 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "must be in [0, 1)");
        if (beta2 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "must be in [0, 1)");
    }

    public double LearningRate { get; set; }
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }

    /// <summary>Steps taken so far (bias correction uses the 1-based step).</summary>
    public int StepCount { get; private set; }

    public IEnumerable<Tensor> Parameters => _slots.Select(s => s.Param);

    /// <summary>Updates every parameter that has a gradient.</summary>
    public void Step()
    {
        StepCount++;
        using var noGrad = GradMode.NoGrad();
        foreach (var s in _slots)
        {
            if (s.Param.Grad is not { } grad) continue;
            var attrs = new AdamWAttrs(LearningRate, Beta1, Beta2, Eps, s.Decay ? WeightDecay : 0, StepCount);
            Tensor.AdamWStep_(s.Param, grad, s.M, s.V, attrs);
        }
    }

    public void ZeroGrad() => Parameters.ZeroGrad();

    /// <summary>The moment tensors ("exp_avg.NAME", "exp_avg_sq.NAME", torch's names) for a checkpoint.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors()
    {
        foreach (var s in _slots)
        {
            yield return new("exp_avg." + s.Name, s.M);
            yield return new("exp_avg_sq." + s.Name, s.V);
        }
    }

    /// <summary>Restores moments and the step count saved by <see cref="StateTensors"/>.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, int stepCount, string source = "checkpoint")
    {
        using var noGrad = GradMode.NoGrad();
        foreach (var s in _slots)
        {
            foreach (var (key, dst) in new[] { ("exp_avg." + s.Name, s.M), ("exp_avg_sq." + s.Name, s.V) })
            {
                if (!state.TryGetValue(key, out var src)) throw new ArgumentException($"{source}: optimizer state '{key}' is missing");
                if (!src.Shape.AsSpan().SequenceEqual(dst.Shape))
                    throw new ArgumentException($"{source}: optimizer state '{key}' has shape {Tensor.ShapeString(src.Shape)}, expected {Tensor.ShapeString(dst.Shape)}");
                dst.CopyFrom_(src.To(dst.DType));
            }
        }
        StepCount = stepCount;
    }
}
