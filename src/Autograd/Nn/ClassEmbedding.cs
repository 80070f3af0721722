namespace ManagedTensor.Nn;

/// <summary>
/// Class labels as vectors, with one more row for "no class" (DiT's LabelEmbedder): the null row is what
/// classifier-free guidance conditions on for its unconditional prediction. In training each label is replaced by
/// the null id with probability <see cref="DropProb"/>, so one network learns both the conditional and the
/// unconditional model (Ho and Salimans 2022).
/// </summary>
public sealed class ClassEmbedding : Module
{
    public ClassEmbedding(int classes, int dim, double dropProb, Generator gen, Device device)
    {
        if (classes < 1) throw new ArgumentException($"ClassEmbedding: {classes} classes");
        if (dropProb is < 0 or >= 1) throw new ArgumentException($"ClassEmbedding: drop probability {dropProb} must be in [0, 1)");
        (Classes, DropProb) = (classes, dropProb);
        Table = Child("embedding_table", new Embedding(classes + 1, dim, gen, device, initStd: 0.02));
    }

    public int Classes { get; }
    public double DropProb { get; }
    public Embedding Table { get; }

    /// <summary>The id of the null class (the last row).</summary>
    public int NullId => Classes;

    /// <summary>
    /// (B) ids in 0..Classes (Classes = null) -> (B, dim). With <paramref name="dropGen"/> (training), each label becomes
    /// the null id with probability DropProb, drawn on the host from that generator (so a resumed run drops the same).
    /// </summary>
    public Tensor Forward(int[] labels, Generator? dropGen = null)
    {
        var ids = new long[labels.Length];
        for (int i = 0; i < labels.Length; i++)
        {
            if (labels[i] < 0 || labels[i] > Classes) throw new ArgumentException($"ClassEmbedding: label {labels[i]} is not a class id (0..{Classes - 1}, or {Classes} for none)");
            bool drop = dropGen is not null && DropProb > 0 && dropGen.NextDouble() < DropProb;
            ids[i] = drop ? NullId : labels[i];
        }
        return Table.Forward(Tensor.FromArray(ids, [ids.Length], Table.Weight.Device));
    }
}
