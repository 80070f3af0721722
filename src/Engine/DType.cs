namespace ManagedTensor;

/// <summary>Element types. F64 exists mainly for finite-difference gradient checks.</summary>
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
}

public static class DTypeInfo
{
    public static int SizeOf(this DType t) => t switch
    {
        DType.F32 or DType.I32 => 4,
        DType.F64 or DType.I64 => 8,
        DType.F16 or DType.BF16 => 2,
        DType.I8 or DType.U8 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown dtype"),
    };

    public static bool IsFloat(this DType t) => t is DType.F32 or DType.F64 or DType.F16 or DType.BF16;

    public static bool IsInteger(this DType t) => !t.IsFloat();

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
