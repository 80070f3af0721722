namespace ManagedTensor.Nn;

/// <summary>The transformer's position-wise feed-forward net: C -> 4C, GELU (exact, erf form), 4C -> C, dropout.</summary>
public sealed class Mlp : Module
{
    private readonly Dropout _dropout;

    public Mlp(int nEmbd, bool bias, double dropout, double projStd, Generator initGen, Generator dropoutGen, Device device)
    {
        CFc = Child("c_fc", new Linear(nEmbd, 4 * nEmbd, bias, initGen, device, initStd: 0.02));
        CProj = Child("c_proj", new Linear(4 * nEmbd, nEmbd, bias, initGen, device, initStd: projStd));
        _dropout = Child("dropout", new Dropout(dropout, dropoutGen));
    }

    public Linear CFc { get; }
    public Linear CProj { get; }

    public Tensor Forward(Tensor x) => _dropout.Forward(CProj.Forward(CFc.Forward(x).Gelu())); // (B, T, C)
}
