namespace ManagedTensor.Nn;

/// <summary>
/// A lookup table (num, dim): ids of any shape -> (ids..., dim). A float table is a trainable parameter
/// whose gradient scatters back into the rows used. A block-format table (a quantized GGUF token
/// embedding) is a frozen buffer, and only the looked-up rows are decoded, to float32: a 32000-row Q4_0
/// table stays 4.5 bits per value on the device and a decode step decodes one row.
/// </summary>
public sealed class Embedding : Module
{
    public Embedding(int count, int dim, Generator gen, Device device, double initStd = 1.0)
    {
        Count = count;
        Dim = dim;
        Weight = Parameter("weight", Init.Normal([count, dim], initStd, gen, device));
    }

    /// <summary>A table over an existing tensor (num, dim): float (a parameter) or a block format (a frozen buffer).</summary>
    public Embedding(Tensor weight)
    {
        if (weight.Rank != 2) throw new ArgumentException($"Embedding: table {weight.Describe()} must be 2-D (num, dim)");
        Count = weight.Shape[0];
        Dim = weight.Shape[1];
        Weight = weight.DType.IsQuantized() ? Buffer("weight", weight) : Parameter("weight", weight);
    }

    public int Count { get; }
    public int Dim { get; }
    public Tensor Weight { get; } // (num, dim)

    public Tensor Forward(Tensor ids) => Weight.DType.IsQuantized() ? QuantizedRows(ids) : Tensor.Embedding(Weight, ids);

    /// <summary>The rows of a block-format table, each distinct id decoded once: (ids..., dim) float32.</summary>
    private Tensor QuantizedRows(Tensor ids)
    {
        var flat = ids.To(Device.Cpu).Reshape(-1).ToDoubleArray().Select(v => (long)v).ToArray();
        var distinct = flat.Distinct().ToArray();
        var slot = new Dictionary<long, long>(distinct.Length);
        var rows = new Tensor[distinct.Length];
        for (int i = 0; i < distinct.Length; i++)
        {
            long id = distinct[i];
            if ((ulong)id >= (ulong)Count) throw new ArgumentOutOfRangeException(nameof(ids), $"Embedding: id {id} is outside the {Count}-row table {Weight.Describe()}");
            slot[id] = i;
            rows[i] = Decode(Weight.Narrow(0, (int)id, 1));    // (1, dim)
        }
        var table = Tensor.Cat(rows, 0);                        // (distinct, dim)
        var index = Tensor.FromArray(flat.Select(id => slot[id]).ToArray(), [flat.Length], Weight.Device);
        return table.IndexSelect(0, index).Reshape([.. ids.Shape, Dim]);
    }

    /// <summary>A block-format row decoded to float32 on its device (through the host where the device cannot decode).</summary>
    private static Tensor Decode(Tensor row)
    {
        using var noGrad = GradMode.NoGrad();
        if (Tensor.HasKernel(Op.Copy, row.Device, null, row)) return row.To(DType.F32);
        return row.To(Device.Cpu).To(DType.F32).To(row.Device);
    }
}
