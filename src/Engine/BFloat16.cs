using System.Runtime.CompilerServices;

namespace ManagedTensor;

/// <summary>
/// bfloat16: the top 16 bits of an IEEE float32 (1 sign, 8 exponent, 7 mantissa bits).
/// Same range as float32, about 3 significant decimal digits. Conversion from float rounds to
/// nearest even, as PyTorch and CUDA's __float2bfloat16 do; NaN stays NaN.
/// </summary>
public readonly struct BFloat16 : IEquatable<BFloat16>
{
    public readonly ushort Bits;

    public BFloat16(ushort bits) => Bits = bits;

    public static BFloat16 FromFloat(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7FFFFFFF) > 0x7F800000) return new BFloat16((ushort)((u >> 16) | 0x40)); // quiet NaN
        // Round to nearest even: add 0x7FFF plus the lowest kept bit, then truncate.
        u += 0x7FFFu + ((u >> 16) & 1u);
        return new BFloat16((ushort)(u >> 16));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float ToFloat() => BitConverter.UInt32BitsToSingle((uint)Bits << 16);

    public static explicit operator BFloat16(float f) => FromFloat(f);
    public static explicit operator float(BFloat16 b) => b.ToFloat();
    public static explicit operator double(BFloat16 b) => b.ToFloat();

    public bool Equals(BFloat16 other) => Bits == other.Bits;
    public override bool Equals(object? obj) => obj is BFloat16 b && Equals(b);
    public override int GetHashCode() => Bits;
    public override string ToString() => ToFloat().ToString("G4", System.Globalization.CultureInfo.InvariantCulture);
}
