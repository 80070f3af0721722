namespace ManagedTensor.Nn;

/// <summary>A lookup table (num, dim): ids of any shape -> (ids..., dim). The gradient scatters back into the rows used.</summary>
public sealed class Embedding : Module
{
    public Embedding(int count, int dim, Generator gen, Device device, double initStd = 1.0)
    {
        Count = count;
        Dim = dim;
        Weight = Parameter("weight", Init.Normal([count, dim], initStd, gen, device));
    }

    public int Count { get; }
    public int Dim { get; }
    public Tensor Weight { get; } // (num, dim)

    public Tensor Forward(Tensor ids) => Tensor.Embedding(Weight, ids);
}
