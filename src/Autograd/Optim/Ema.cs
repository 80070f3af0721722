using ManagedTensor.Nn;

namespace ManagedTensor.Optim;

/// <summary>
/// An exponential moving average of a model's parameters (DDPM, DiT sample from it): after each optimizer step
///   shadow = decay * shadow + (1 - decay) * param,
/// with the decay warmed up as min(decay, (1 + n) / (10 + n)) after n updates, so the average does not sit at the
/// random init for the first thousands of steps of a short run. <see cref="Swap"/> exchanges the model's weights
/// with the average for sampling and back.
/// </summary>
public sealed class Ema
{
    private readonly List<(string Name, Tensor Param, Tensor Shadow)> _slots;

    public Ema(Module model, double decay = 0.9999)
    {
        if (decay is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(decay), decay, "EMA decay must be in [0, 1)");
        Decay = decay;
        using var noGrad = GradMode.NoGrad();
        _slots = model.NamedParameters().Select(p => (p.Name, p.Tensor, p.Tensor.Detach().Clone())).ToList();
    }

    public double Decay { get; }

    /// <summary>Updates applied so far.</summary>
    public int Updates { get; private set; }

    /// <summary>The decay the next update uses.</summary>
    public double CurrentDecay => Math.Min(Decay, (1.0 + Updates) / (10.0 + Updates));

    public void Update()
    {
        double d = CurrentDecay;
        using var noGrad = GradMode.NoGrad();
        foreach (var (_, p, s) in _slots) s.CopyFrom_(s * d + p.Detach() * (1 - d));
        Updates++;
    }

    /// <summary>Exchanges the model's parameters with the averages (call again to restore).</summary>
    public void Swap()
    {
        using var noGrad = GradMode.NoGrad();
        foreach (var (_, p, s) in _slots)
        {
            var tmp = p.Detach().Clone();
            p.CopyFrom_(s);
            s.CopyFrom_(tmp);
        }
    }

    /// <summary>The averages as "ema.NAME" tensors for a checkpoint.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors() => _slots.Select(s => new KeyValuePair<string, Tensor>("ema." + s.Name, s.Shadow));

    public void LoadState(IReadOnlyDictionary<string, Tensor> state, int updates, string source)
    {
        using var noGrad = GradMode.NoGrad();
        foreach (var (name, _, s) in _slots)
        {
            if (!state.TryGetValue("ema." + name, out var src)) throw new ArgumentException($"{source}: EMA tensor 'ema.{name}' is missing");
            if (!src.Shape.AsSpan().SequenceEqual(s.Shape))
                throw new ArgumentException($"{source}: EMA tensor 'ema.{name}' has shape {Tensor.ShapeString(src.Shape)}, expected {Tensor.ShapeString(s.Shape)}");
            s.CopyFrom_(src.To(s.DType));
        }
        Updates = updates;
    }
}
