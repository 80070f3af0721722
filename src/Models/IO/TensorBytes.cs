namespace ManagedTensor.Models.IO;

/// <summary>Stored bytes (little-endian elements, or whole blocks of a block format) as a CPU tensor, as model files keep them.</summary>
public static class TensorBytes
{
    /// <summary>
    /// A CPU tensor of <paramref name="dtype"/> and <paramref name="shape"/> holding a copy of <paramref name="bytes"/>, which
    /// must be exactly what the shape takes in that dtype (block formats: whole blocks along the last axis).
    /// </summary>
    public static Tensor ToTensor(ReadOnlySpan<byte> bytes, int[] shape, DType dtype, string? name = null)
    {
        if (dtype.IsQuantized()) return Tensor.FromBlocks(bytes.ToArray(), shape, dtype, name: name);
        var t = Tensor.Empty(shape, dtype);
        long need = (long)t.Numel * dtype.SizeOf();
        if (bytes.Length != need)
            throw new ArgumentException($"tensor {(name is null ? "" : $"'{name}' ")}{Tensor.ShapeString(shape)} {dtype}: {bytes.Length} bytes given, the shape takes {need}");
        SafeTensorsFile.CopyInto(t, bytes);
        t.Name = name;
        return t;
    }
}
