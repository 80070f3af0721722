using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// Conversions between the element types of the eight dtypes, with PyTorch's rules: float to integer
/// truncates toward zero, integer to narrower integer keeps the low bits (wraps), float to float rounds
/// to nearest even. BF16 goes through float32. The typeof tests are JIT-time constants, so each
/// instantiation compiles to the one conversion it needs.
/// </summary>
internal static class ElementCast
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TTo Cast<TFrom, TTo>(TFrom x) where TFrom : unmanaged where TTo : unmanaged
    {
        if (typeof(TFrom) == typeof(TTo)) return Unsafe.As<TFrom, TTo>(ref x);
        if (IsInteger<TFrom>() && IsInteger<TTo>()) return FromLong<TTo>(ToLong(x));
        if (IsInteger<TTo>()) return FromLong<TTo>(TruncateToLong(ToDouble(x)));
        if (typeof(TFrom) == typeof(float)) return FromFloat<TTo>(Unsafe.As<TFrom, float>(ref x));
        return FromDouble<TTo>(ToDouble(x));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsInteger<T>() =>
        typeof(T) == typeof(int) || typeof(T) == typeof(long) || typeof(T) == typeof(sbyte) || typeof(T) == typeof(byte);

    /// <summary>Truncation toward zero; NaN becomes 0 and out-of-range values saturate (.NET's conversion).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long TruncateToLong(double d) => (long)d;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double ToDouble<T>(T x) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return Unsafe.As<T, float>(ref x);
        if (typeof(T) == typeof(double)) return Unsafe.As<T, double>(ref x);
        if (typeof(T) == typeof(Half)) return (double)Unsafe.As<T, Half>(ref x);
        if (typeof(T) == typeof(BFloat16)) return Unsafe.As<T, BFloat16>(ref x).ToFloat();
        return ToLong(x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long ToLong<T>(T x) where T : unmanaged
    {
        if (typeof(T) == typeof(int)) return Unsafe.As<T, int>(ref x);
        if (typeof(T) == typeof(long)) return Unsafe.As<T, long>(ref x);
        if (typeof(T) == typeof(sbyte)) return Unsafe.As<T, sbyte>(ref x);
        if (typeof(T) == typeof(byte)) return Unsafe.As<T, byte>(ref x);
        throw new NotSupportedException($"no integer conversion from {typeof(T).Name}");
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T FromLong<T>(long v) where T : unmanaged
    {
        if (typeof(T) == typeof(int)) { int r = (int)v; return Unsafe.As<int, T>(ref r); }
        if (typeof(T) == typeof(long)) return Unsafe.As<long, T>(ref v);
        if (typeof(T) == typeof(sbyte)) { sbyte r = (sbyte)v; return Unsafe.As<sbyte, T>(ref r); }
        if (typeof(T) == typeof(byte)) { byte r = (byte)v; return Unsafe.As<byte, T>(ref r); }
        return FromDouble<T>(v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T FromFloat<T>(float v) where T : unmanaged
    {
        if (typeof(T) == typeof(Half)) { var r = (Half)v; return Unsafe.As<Half, T>(ref r); }
        if (typeof(T) == typeof(BFloat16)) { var r = BFloat16.FromFloat(v); return Unsafe.As<BFloat16, T>(ref r); }
        return FromDouble<T>(v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T FromDouble<T>(double v) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) { float r = (float)v; return Unsafe.As<float, T>(ref r); }
        if (typeof(T) == typeof(double)) return Unsafe.As<double, T>(ref v);
        if (typeof(T) == typeof(Half)) { var r = (Half)v; return Unsafe.As<Half, T>(ref r); }
        // double -> float -> bf16 rounds twice; the first rounding only matters for values within
        // 2^-29 relative of a bf16 tie, far below what bf16 can represent.
        if (typeof(T) == typeof(BFloat16)) { var r = BFloat16.FromFloat((float)v); return Unsafe.As<BFloat16, T>(ref r); }
        return FromLong<T>(TruncateToLong(v));
    }

    /// <summary>Converts a contiguous run, using vectorized routines for the common float pairs.</summary>
    public static void Span<TFrom, TTo>(ReadOnlySpan<TFrom> src, Span<TTo> dst) where TFrom : unmanaged where TTo : unmanaged
    {
        if (typeof(TFrom) == typeof(TTo))
        {
            As<TFrom, TTo>(src).CopyTo(dst);
            return;
        }
        if (typeof(TFrom) == typeof(float) && typeof(TTo) == typeof(double))
        {
            TensorPrimitives.ConvertTruncating(As<TFrom, float>(src), As<TTo, double>(dst));
            return;
        }
        if (typeof(TFrom) == typeof(double) && typeof(TTo) == typeof(float))
        {
            TensorPrimitives.ConvertTruncating(As<TFrom, double>(src), As<TTo, float>(dst));
            return;
        }
        if (typeof(TFrom) == typeof(float) && typeof(TTo) == typeof(Half))
        {
            TensorPrimitives.ConvertToHalf(As<TFrom, float>(src), As<TTo, Half>(dst));
            return;
        }
        if (typeof(TFrom) == typeof(Half) && typeof(TTo) == typeof(float))
        {
            TensorPrimitives.ConvertToSingle(As<TFrom, Half>(src), As<TTo, float>(dst));
            return;
        }
        if (typeof(TFrom) == typeof(float) && typeof(TTo) == typeof(BFloat16))
        {
            BFloat16Span.FromFloat(As<TFrom, float>(src), As<TTo, BFloat16>(dst));
            return;
        }
        if (typeof(TFrom) == typeof(BFloat16) && typeof(TTo) == typeof(float))
        {
            BFloat16Span.ToFloat(As<TFrom, BFloat16>(src), As<TTo, float>(dst));
            return;
        }
        for (int i = 0; i < src.Length; i++) dst[i] = Cast<TFrom, TTo>(src[i]);
    }

    /// <summary>Reinterprets a span whose element type is known (by the typeof tests) to be TTo.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ReadOnlySpan<TTo> As<TFrom, TTo>(ReadOnlySpan<TFrom> s) where TFrom : unmanaged where TTo : unmanaged =>
        MemoryMarshal.CreateReadOnlySpan(ref Unsafe.As<TFrom, TTo>(ref MemoryMarshal.GetReference(s)), s.Length);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Span<TTo> As<TFrom, TTo>(Span<TFrom> s) where TFrom : unmanaged where TTo : unmanaged =>
        MemoryMarshal.CreateSpan(ref Unsafe.As<TFrom, TTo>(ref MemoryMarshal.GetReference(s)), s.Length);
}
