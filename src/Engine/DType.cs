namespace ManagedTensor;

/// <summary>
/// Element types. F64 exists mainly for finite-difference gradient checks. The block formats after U8 are
/// quantized weights (src/Engine/Quant): a tensor of one holds packed blocks of bytes (each block a scale
/// and small integers for BlockSize values), its shape counts values, and its last axis is a whole number
/// of blocks. Casting to or from a float dtype (To) decodes or encodes; QMatMul multiplies by them.
/// </summary>
public enum DType
{
    F32,
    F64,
    F16,
    BF16,
    I32,
    I64,
    I8,
    U8,

    // ---- block formats (ggml's layouts, bit for bit) ----
    Q8_0,
    Q4_0,
    Q4_K,
    Q5_0,
    Q5_1,
    Q5_K,
    Q6_K,
    /// <summary>The K-quants' activation format (f32 scale, 16-value sums): what Q4_K..Q6_K and TQ2_0 rows are dotted with.</summary>
    Q8_K,
    /// <summary>bitsandbytes' 4-bit NormalFloat (QLoRA), blocks of 64 with an f32 absmax.</summary>
    NF4,
    /// <summary>Ternary weights {-1, 0, +1} * d for BitNet b1.58 (llama.cpp's TQ2_0: 2 bits per value, blocks of 256).</summary>
    TQ2_0,
}

public static class DTypeInfo
{
    /// <summary>Every dtype with one value per element (all but the block formats): what elementwise kernels are made for.</summary>
    public static readonly DType[] ElementTypes = Enum.GetValues<DType>().Where(t => !t.IsQuantized()).ToArray();

    /// <summary>Bytes per element; a block format has none (see <see cref="ByteCount"/>).</summary>
    public static int SizeOf(this DType t) => t switch
    {
        DType.F32 or DType.I32 => 4,
        DType.F64 or DType.I64 => 8,
        DType.F16 or DType.BF16 => 2,
        DType.I8 or DType.U8 => 1,
        _ when t.IsQuantized() => throw new ArgumentException($"{t} is a block format: its size is per block of values, not per value (use ByteCount)"),
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown dtype"),
    };

    /// <summary>Bytes taken by <paramref name="elements"/> elements (whole blocks for a block format).</summary>
    public static long ByteCount(this DType t, long elements) =>
        t.IsQuantized() ? Quant.BlockFormats.Get(t).ByteCount(elements) : elements * t.SizeOf();

    public static bool IsFloat(this DType t) => t is DType.F32 or DType.F64 or DType.F16 or DType.BF16;

    public static bool IsInteger(this DType t) => t is DType.I32 or DType.I64 or DType.I8 or DType.U8;

    /// <summary>
    /// The dtype a binary op over two float dtypes computes and returns, as torch.result_type: the wider one
    /// (F64 over F32 over the 16-bit types), and F32 for F16 with BF16, since neither holds the other (F16 has 3 more
    /// mantissa bits, BF16 8 more exponent bits). Null where the two cannot promote: equal dtypes need no promotion,
    /// and integer with float or two different integer types are refused by the engine (cast with To).
    /// </summary>
    public static DType? PromoteFloat(DType a, DType b)
    {
        if (a == b || !a.IsFloat() || !b.IsFloat()) return null;
        if (a == DType.F64 || b == DType.F64) return DType.F64;
        return DType.F32; // F32 with a 16-bit type, or F16 with BF16
    }

    /// <summary>A block format of quantized values (Q8_0, Q4_0, ...).</summary>
    public static bool IsQuantized(this DType t) => t >= DType.Q8_0;

    /// <summary>The CLR element type a CPU storage of this dtype holds.</summary>
    public static Type ClrType(this DType t) => t switch
    {
        DType.F32 => typeof(float),
        DType.F64 => typeof(double),
        DType.F16 => typeof(Half),
        DType.BF16 => typeof(BFloat16),
        DType.I32 => typeof(int),
        DType.I64 => typeof(long),
        DType.I8 => typeof(sbyte),
        DType.U8 => typeof(byte),
        _ when t.IsQuantized() => typeof(byte), // the blocks' bytes
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown dtype"),
    };

    public static DType Of<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return DType.F32;
        if (typeof(T) == typeof(double)) return DType.F64;
        if (typeof(T) == typeof(Half)) return DType.F16;
        if (typeof(T) == typeof(BFloat16)) return DType.BF16;
        if (typeof(T) == typeof(int)) return DType.I32;
        if (typeof(T) == typeof(long)) return DType.I64;
        if (typeof(T) == typeof(sbyte)) return DType.I8;
        if (typeof(T) == typeof(byte)) return DType.U8;
        throw new NotSupportedException($"no dtype for CLR type {typeof(T).Name}");
    }
}
