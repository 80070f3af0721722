namespace ManagedTensor.Optim;

/// <summary>
/// Stochastic gradient descent with momentum, as torch.optim.SGD:
///   g = grad + wd * p                     (L2 weight decay, coupled: it goes through the momentum)
///   buf = g on the first step, else momentum * buf + (1 - dampening) * g
///   p = p - lr * (nesterov ? g + momentum * buf : buf)
/// </summary>
public sealed class Sgd : IOptimizer
{
    private readonly List<(Tensor Param, Tensor? Buffer)> _slots;

    public Sgd(IEnumerable<Tensor> parameters, double lr, double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false)
    {
        if (nesterov && (momentum <= 0 || dampening != 0))
            throw new ArgumentException("Nesterov momentum needs momentum > 0 and dampening 0");
        LearningRate = lr;
        Momentum = momentum;
        Dampening = dampening;
        WeightDecay = weightDecay;
        Nesterov = nesterov;
        _slots = parameters.Select(p => (p, (Tensor?)null)).ToList();
    }

    public double LearningRate { get; set; }
    public double Momentum { get; }
    public double Dampening { get; }
    public double WeightDecay { get; }
    public bool Nesterov { get; }
    public int StepCount { get; private set; }
    public IEnumerable<Tensor> Parameters => _slots.Select(s => s.Param);

    public void Step()
    {
        StepCount++;
        using var noGrad = GradMode.NoGrad();
        for (int i = 0; i < _slots.Count; i++)
        {
            var (p, buf) = _slots[i];
            if (p.Grad is not { } g) continue;
            if (WeightDecay != 0) g += p * WeightDecay;
            var update = g;
            if (Momentum != 0)
            {
                buf = buf is null ? g.Clone() : buf * Momentum + g * (1 - Dampening);
                _slots[i] = (p, buf);
                update = Nesterov ? g + buf * Momentum : buf;
            }
            p.CopyFrom_(p - update * LearningRate);
        }
    }

    public void ZeroGrad() => Parameters.ZeroGrad();
}
