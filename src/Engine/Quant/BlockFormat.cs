namespace ManagedTensor.Quant;

/// <summary>Decodes whole blocks: <c>dst.Length</c> values (a multiple of the block size) from their bytes.</summary>
public delegate void BlockDecoder(ReadOnlySpan<byte> src, Span<float> dst);

/// <summary>Encodes whole blocks: <c>src.Length</c> values (a multiple of the block size) into their bytes.</summary>
public delegate void BlockEncoder(ReadOnlySpan<float> src, Span<byte> dst);

/// <summary>
/// The dot product of <paramref name="blocks"/> blocks of a weight row with an activation row already encoded
/// in the format's <see cref="BlockFormat.DotType"/> (integer arithmetic inside each block, as ggml's vec_dot).
/// </summary>
public delegate float BlockDot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int blocks);

/// <summary>
/// One block format's traits (ggml's type_traits): a quantized row is a sequence of blocks, each
/// <see cref="BlockSize"/> values stored in <see cref="BlockBytes"/> bytes (a scale or two and small integers).
/// A tensor of a block dtype holds those bytes; its shape counts values, and its last axis is a whole
/// number of blocks. <see cref="Dot"/>, when present, multiplies a weight row by an activation row that was
/// encoded once in <see cref="DotType"/> (Q8_0 for the 32-value formats, Q8_K for the 256-value ones, F32 for NF4,
/// whose activations stay float): the fast path of QMatMul.
/// </summary>
public sealed record BlockFormat(DType DType, int BlockSize, int BlockBytes, BlockDecoder Decode)
{
    public string Name => DType.ToString();

    /// <summary>ggml's type code in GGUF files (null for formats ggml does not have).</summary>
    public int? GgmlType { get; init; }

    /// <summary>Encoder from float32 (null: the format can be read but not written).</summary>
    public BlockEncoder? Encode { get; init; }

    /// <summary>The format activations are encoded in for <see cref="Dot"/>.</summary>
    public DType? DotType { get; init; }

    /// <summary>Integer block dot product against <see cref="DotType"/> activations (null: decode the row and dot in float).</summary>
    public BlockDot? Dot { get; init; }

    /// <summary>The plain loop <see cref="Dot"/> is tested against (its SIMD versions must agree with it).</summary>
    public BlockDot? DotReference { get; init; }

    /// <summary>
    /// Whether <see cref="Dot"/> adds its per-block terms in <see cref="DotReference"/>'s order, so the two agree bit for
    /// bit (the 256-value formats: one horizontal sum per block is cheap there); otherwise its lanes accumulate across
    /// blocks (the 32-value formats, where a horizontal sum per block would cost as much as the block) and the two agree
    /// to float32 rounding.
    /// </summary>
    public bool DotInReferenceOrder { get; init; }

    /// <summary>Bits stored per value (scales included): 8.5 for Q8_0, 4.5 for Q4_0.</summary>
    public double BitsPerValue => 8.0 * BlockBytes / BlockSize;

    /// <summary>Bytes of <paramref name="values"/> values, which must fill whole blocks.</summary>
    public long ByteCount(long values)
    {
        if (values % BlockSize != 0)
            throw new ArgumentException($"{Name}: {values} values do not fill whole blocks of {BlockSize}");
        return values / BlockSize * BlockBytes;
    }
}
