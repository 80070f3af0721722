namespace ManagedTensor.Nn;

/// <summary>
/// Inverted dropout: in training, each element is kept with probability 1 - p and scaled by 1/(1 - p),
/// so evaluation (identity) needs no rescaling. The mask comes from the model's dropout generator
/// (Philox), so a saved generator offset replays the same masks after a resume.
/// </summary>
public sealed class Dropout : Module
{
    private readonly Generator _gen;

    public Dropout(double p, Generator gen)
    {
        if (p is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1)");
        P = p;
        _gen = gen;
    }

    public double P { get; }

    public Tensor Forward(Tensor x) => Training ? Functional.Dropout(x, P, _gen) : x;
}
