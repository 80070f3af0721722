using System.Numerics;
using System.Runtime.InteropServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// Vectorized float32 &lt;-&gt; bfloat16 conversion of contiguous runs, bit for bit the same as
/// <see cref="BFloat16.FromFloat"/> and <see cref="BFloat16.ToFloat"/>.
/// </summary>
internal static class BFloat16Span
{
    /// <summary>bf16 -> f32: the 16 bits become the top half of the float's bits (exact).</summary>
    public static void ToFloat(ReadOnlySpan<BFloat16> src, Span<float> dst)
    {
        var s = MemoryMarshal.Cast<BFloat16, ushort>(src);
        var d = MemoryMarshal.Cast<float, uint>(dst);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= s.Length - Vector<ushort>.Count; i += Vector<ushort>.Count)
            {
                Vector.Widen(new Vector<ushort>(s[i..]), out var lo, out var hi);
                (lo << 16).CopyTo(d[i..]);
                (hi << 16).CopyTo(d[(i + Vector<uint>.Count)..]);
            }
        }
        for (; i < s.Length; i++) d[i] = (uint)s[i] << 16;
    }

    /// <summary>f32 -> bf16, round to nearest even: add 0x7FFF plus the lowest kept bit, keep the top 16 bits; NaN stays a quiet NaN.</summary>
    public static void FromFloat(ReadOnlySpan<float> src, Span<BFloat16> dst)
    {
        var s = MemoryMarshal.Cast<float, uint>(src);
        var d = MemoryMarshal.Cast<BFloat16, ushort>(dst);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= s.Length - Vector<ushort>.Count; i += Vector<ushort>.Count)
            {
                var lo = Round(new Vector<uint>(s[i..]));
                var hi = Round(new Vector<uint>(s[(i + Vector<uint>.Count)..]));
                Vector.Narrow(lo, hi).CopyTo(d[i..]);
            }
        }
        for (; i < s.Length; i++) d[i] = BFloat16.FromFloat(src[i]).Bits;
    }

    /// <summary>The bf16 bits of each float, in the low half of each lane.</summary>
    private static Vector<uint> Round(Vector<uint> u)
    {
        var rounded = (u + new Vector<uint>(0x7FFFu) + ((u >> 16) & Vector<uint>.One)) >> 16;
        var quietNaN = (u >> 16) | new Vector<uint>(0x40u);
        var isNaN = Vector.GreaterThan(u & new Vector<uint>(0x7FFFFFFFu), new Vector<uint>(0x7F800000u));
        return Vector.ConditionalSelect(isNaN, quietNaN, rounded);
    }
}
