namespace ManagedTensor.Quant;

/// <summary>
/// The table of block formats, one entry per block dtype. Each format's encoder, decoder and dot product
/// live in its own file (Q8_0.cs, Q4_0.cs, ...), written after ggml's reference code (ggml-quants.c) so the
/// bytes are ggml's, bit for bit, and GGUF files move both ways.
/// </summary>
public static class BlockFormats
{
    private static readonly Dictionary<DType, BlockFormat> Table = new[]
    {
        Q8_0.Format,
        Q4_0.Format,
        Q4_K.Format,
        Q5_0.Format,
        Q5_1.Format,
        Q5_K.Format,
        Q6_K.Format,
        Q8_K.Format,
        NF4.Format,
        TQ2_0.Format,
    }.ToDictionary(f => f.DType);

    public static IEnumerable<BlockFormat> All => Table.Values;

    public static bool IsBlock(DType dtype) => Table.ContainsKey(dtype);

    public static BlockFormat Get(DType dtype) =>
        Table.TryGetValue(dtype, out var f) ? f : throw new ArgumentException($"{dtype} is not a block format (block formats: {string.Join(", ", Table.Keys)})");

    /// <summary>The format with ggml type code <paramref name="code"/>, or null.</summary>
    public static BlockFormat? FromGgml(int code) => Table.Values.FirstOrDefault(f => f.GgmlType == code);
}
