using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static ManagedTensor.Quant.QuantMath;

namespace ManagedTensor.Quant;

/// <summary>
/// Dot products of the 256-value formats (Q4_K, Q5_K, Q6_K, TQ2_0) with Q8_K activations, as ggml's vec_dot_*_q8_K:
/// per super-block an exact integer sum of (sub-block scale) * (weight quant) * (activation quant), the mins or the
/// quants' offset folded in through Q8_K's 16-value sums, then one float step,
///   sum += (dx * dw) * isum - (dx * dmin) * imin.
/// Each has a plain loop (…Scalar, the reference) and an AVX2 version: the integer sums are exact either way and the
/// float step is the same expression in the same order, so the two agree bit for bit.
/// AVX2 products: maddubs multiplies unsigned weight quants (at most 63) by signed activation quants (|q8| &lt;= 127,
/// Q8_K never produces -128) into int16 pair sums that cannot overflow (2 * 63 * 127 &lt; 32767), then madd by the
/// sub-block scale widens them to int32.
/// </summary>
internal static class KQuantDots
{
    private const int Q8KBytes = Q8_K.BlockBytes;

    private static float Q8Scale(ReadOnlySpan<byte> xb) => BinaryPrimitives.ReadSingleLittleEndian(xb);

    private static int Q8Quant(ReadOnlySpan<byte> xb, int i) => (sbyte)xb[4 + i];

    /// <summary>Sum of Q8_K's 16-value sums g0 and g0 + 1 (the 32 activations of one 32-value sub-block).</summary>
    private static int Q8Sum32(ReadOnlySpan<byte> xb, int sub) =>
        BinaryPrimitives.ReadInt16LittleEndian(xb[(260 + 4 * sub)..]) + BinaryPrimitives.ReadInt16LittleEndian(xb[(262 + 4 * sub)..]);

    private static int Q8Sum16(ReadOnlySpan<byte> xb, int g) => BinaryPrimitives.ReadInt16LittleEndian(xb[(260 + 2 * g)..]);

    // ---- Q4_K ----

    public static float DotQ4_KScalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * Q4_K.BlockBytes, Q4_K.BlockBytes);
            var xb = x.Slice(b * Q8KBytes, Q8KBytes);
            var scales = wb.Slice(4, 12);
            int isum = 0, imin = 0;
            for (int j = 0; j < 8; j++)
            {
                var (sc, m) = ScaleMinK4(j, scales);
                int c = j / 2, shift = 4 * (j % 2), s = 0;
                for (int l = 0; l < 32; l++) s += ((wb[16 + 32 * c + l] >> shift) & 0x0F) * Q8Quant(xb, 32 * j + l);
                isum += sc * s;
                imin += m * Q8Sum32(xb, j);
            }
            float dx = Q8Scale(xb);
            sum += dx * ReadHalf(wb, 0) * isum - dx * ReadHalf(wb, 2) * imin;
        }
        return sum;
    }

    public static float DotQ4_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        if (!Avx2.IsSupported) return DotQ4_KScalar(w, x, blocks);
        ref byte wr = ref MemoryMarshal.GetReference(w);
        ref byte xr = ref MemoryMarshal.GetReference(x);
        var m4 = Vector256.Create((byte)0x0F);
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ref byte wb = ref Unsafe.Add(ref wr, b * Q4_K.BlockBytes);
            ref byte xb = ref Unsafe.Add(ref xr, b * Q8KBytes);
            var (scales, mins) = UnpackScaleMinK4(ref Unsafe.Add(ref wb, 4));
            var acc = Vector256<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                var q4 = Vector256.LoadUnsafe(ref wb, (nuint)(16 + 32 * c));
                var lo = q4 & m4;
                var hi = Vector256.ShiftRightLogical(q4.AsUInt16(), 4).AsByte() & m4;
                var xlo = Vector256.LoadUnsafe(ref xb, (nuint)(4 + 64 * c)).AsSByte();
                var xhi = Vector256.LoadUnsafe(ref xb, (nuint)(4 + 64 * c + 32)).AsSByte();
                acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, xlo), Vector256.Create((short)(byte)(scales >> (16 * c))));
                acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, xhi), Vector256.Create((short)(byte)(scales >> (16 * c + 8))));
            }
            int isum = Vector256.Sum(acc);
            int imin = MinsTimesSums(mins, ref xb);
            float dx = Unsafe.ReadUnaligned<float>(ref xb);
            sum += dx * HalfAt(ref wb) * isum - dx * HalfAt(ref Unsafe.Add(ref wb, 2)) * imin;
        }
        return sum;
    }

    /// <summary>
    /// The eight 6-bit scales and mins of Q4_K / Q5_K (see <see cref="ScaleMinK4"/>) unpacked at once from the 12 bytes,
    /// as ggml's utmp masks do: byte j of the first result is scale j, of the second min j.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (ulong Scales, ulong Mins) UnpackScaleMinK4(ref byte q)
    {
        uint u0 = Unsafe.ReadUnaligned<uint>(ref q), u1 = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref q, 4)), u2 = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref q, 8));
        uint scLo = u0 & 0x3F3F3F3F, mLo = u1 & 0x3F3F3F3F;
        uint scHi = (u2 & 0x0F0F0F0F) | (((u0 >> 6) & 0x03030303) << 4);
        uint mHi = ((u2 >> 4) & 0x0F0F0F0F) | (((u1 >> 6) & 0x03030303) << 4);
        return (scLo | ((ulong)scHi << 32), mLo | ((ulong)mHi << 32));
    }

    /// <summary>sum_j min_j * (activation sum of sub-block j), the 8 mins as bytes: Q8_K's 16-value sums added in pairs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int MinsTimesSums(ulong mins, ref byte xb)
    {
        var bs = Vector256.LoadUnsafe(ref Unsafe.As<byte, short>(ref Unsafe.Add(ref xb, 260)));
        var sums32 = Ssse3.HorizontalAdd(bs.GetLower(), bs.GetUpper());                           // (8) sub-block sums, |s| <= 32 * 127
        var m16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(mins).AsByte());           // (8) mins widened
        return Vector128.Sum(Sse2.MultiplyAddAdjacent(m16, sums32));
    }

    // ---- Q5_K ----

    public static float DotQ5_KScalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * Q5_K.BlockBytes, Q5_K.BlockBytes);
            var xb = x.Slice(b * Q8KBytes, Q8KBytes);
            var scales = wb.Slice(4, 12);
            int isum = 0, imin = 0;
            for (int j = 0; j < 8; j++)
            {
                var (sc, m) = ScaleMinK4(j, scales);
                int c = j / 2, shift = 4 * (j % 2), s = 0;
                for (int l = 0; l < 32; l++)
                {
                    int q = ((wb[48 + 32 * c + l] >> shift) & 0x0F) | (((wb[16 + l] >> j) & 1) << 4);
                    s += q * Q8Quant(xb, 32 * j + l);
                }
                isum += sc * s;
                imin += m * Q8Sum32(xb, j);
            }
            float dx = Q8Scale(xb);
            sum += dx * ReadHalf(wb, 0) * isum - dx * ReadHalf(wb, 2) * imin;
        }
        return sum;
    }

    public static float DotQ5_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        if (!Avx2.IsSupported) return DotQ5_KScalar(w, x, blocks);
        ref byte wr = ref MemoryMarshal.GetReference(w);
        ref byte xr = ref MemoryMarshal.GetReference(x);
        var m4 = Vector256.Create((byte)0x0F);
        var one = Vector256.Create((byte)1);
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ref byte wb = ref Unsafe.Add(ref wr, b * Q5_K.BlockBytes);
            ref byte xb = ref Unsafe.Add(ref xr, b * Q8KBytes);
            var (scales, mins) = UnpackScaleMinK4(ref Unsafe.Add(ref wb, 4));
            var qh = Vector256.LoadUnsafe(ref wb, 16);
            var acc = Vector256<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                var q5 = Vector256.LoadUnsafe(ref wb, (nuint)(48 + 32 * c));
                // Fifth bits: bit 2c of qh for the low nibbles, bit 2c + 1 for the high ones, moved to bit 4.
                var h1 = Vector256.ShiftLeft((Vector256.ShiftRightLogical(qh.AsUInt16(), 2 * c).AsByte() & one).AsUInt16(), 4).AsByte();
                var h2 = Vector256.ShiftLeft((Vector256.ShiftRightLogical(qh.AsUInt16(), 2 * c + 1).AsByte() & one).AsUInt16(), 4).AsByte();
                var lo = (q5 & m4) | h1;
                var hi = (Vector256.ShiftRightLogical(q5.AsUInt16(), 4).AsByte() & m4) | h2;
                var xlo = Vector256.LoadUnsafe(ref xb, (nuint)(4 + 64 * c)).AsSByte();
                var xhi = Vector256.LoadUnsafe(ref xb, (nuint)(4 + 64 * c + 32)).AsSByte();
                acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, xlo), Vector256.Create((short)(byte)(scales >> (16 * c))));
                acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, xhi), Vector256.Create((short)(byte)(scales >> (16 * c + 8))));
            }
            int isum = Vector256.Sum(acc);
            int imin = MinsTimesSums(mins, ref xb);
            float dx = Unsafe.ReadUnaligned<float>(ref xb);
            sum += dx * HalfAt(ref wb) * isum - dx * HalfAt(ref Unsafe.Add(ref wb, 2)) * imin;
        }
        return sum;
    }

    // ---- Q6_K ----
    // q in 0..63 stands for q - 32: isum = sum_g sc_g * (sum q * q8 - 32 * bsum_g), the offset taken from Q8_K's sums.

    public static float DotQ6_KScalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        float sum = 0;
        Span<int> q = stackalloc int[256];
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * Q6_K.BlockBytes, Q6_K.BlockBytes);
            var xb = x.Slice(b * Q8KBytes, Q8KBytes);
            for (int h = 0; h < 2; h++)
                for (int l = 0; l < 32; l++)
                {
                    int ql0 = wb[64 * h + l], ql1 = wb[64 * h + l + 32], qh = wb[128 + 32 * h + l];
                    q[128 * h + l] = (ql0 & 0xF) | ((qh & 3) << 4);
                    q[128 * h + l + 32] = (ql1 & 0xF) | (((qh >> 2) & 3) << 4);
                    q[128 * h + l + 64] = (ql0 >> 4) | (((qh >> 4) & 3) << 4);
                    q[128 * h + l + 96] = (ql1 >> 4) | (((qh >> 6) & 3) << 4);
                }
            int isum = 0, ioff = 0;
            for (int g = 0; g < 16; g++)
            {
                int sc = (sbyte)wb[192 + g], s = 0;
                for (int i = 0; i < 16; i++) s += q[16 * g + i] * Q8Quant(xb, 16 * g + i);
                isum += sc * s;
                ioff += sc * Q8Sum16(xb, g);
            }
            float dx = Q8Scale(xb);
            sum += dx * ReadHalf(wb, 208) * (isum - 32 * ioff);
        }
        return sum;
    }

    public static float DotQ6_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        if (!Avx2.IsSupported) return DotQ6_KScalar(w, x, blocks);
        ref byte wr = ref MemoryMarshal.GetReference(w);
        ref byte xr = ref MemoryMarshal.GetReference(x);
        var m4 = Vector256.Create((byte)0x0F);
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ref byte wb = ref Unsafe.Add(ref wr, b * Q6_K.BlockBytes);
            ref byte xb = ref Unsafe.Add(ref xr, b * Q8KBytes);
            var acc = Vector256<int>.Zero;
            // sum_g scale_g * bsum_g: the 16 int8 scales widened, madd with Q8_K's 16-value sums.
            var sc16 = Avx2.ConvertToVector256Int16(Vector128.LoadUnsafe(ref Unsafe.Add(ref wb, 192)).AsSByte());
            var bsums = Vector256.LoadUnsafe(ref Unsafe.As<byte, short>(ref Unsafe.Add(ref xb, 260)));
            int ioff = Vector256.Sum(Avx2.MultiplyAddAdjacent(sc16, bsums));
            for (int h = 0; h < 2; h++)
            {
                var ql0 = Vector256.LoadUnsafe(ref wb, (nuint)(64 * h));
                var ql1 = Vector256.LoadUnsafe(ref wb, (nuint)(64 * h + 32));
                var qh = Vector256.LoadUnsafe(ref wb, (nuint)(128 + 32 * h)).AsUInt16();
                // Four groups of 32 values (128h + 0, 32, 64, 96), each two 16-value sub-blocks with their own scales.
                var q1 = (ql0 & m4) | Vector256.ShiftLeft(qh & Vector256.Create((ushort)0x0303), 4).AsByte();
                var q2 = (ql1 & m4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 2) & Vector256.Create((ushort)0x0303), 4).AsByte();
                var q3 = (Vector256.ShiftRightLogical(ql0.AsUInt16(), 4).AsByte() & m4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 4) & Vector256.Create((ushort)0x0303), 4).AsByte();
                var q4 = (Vector256.ShiftRightLogical(ql1.AsUInt16(), 4).AsByte() & m4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 6) & Vector256.Create((ushort)0x0303), 4).AsByte();
                acc += Group(q1, ref xb, 128 * h, 8 * h + 0, ref wb);
                acc += Group(q2, ref xb, 128 * h + 32, 8 * h + 2, ref wb);
                acc += Group(q3, ref xb, 128 * h + 64, 8 * h + 4, ref wb);
                acc += Group(q4, ref xb, 128 * h + 96, 8 * h + 6, ref wb);
            }
            int isum = Vector256.Sum(acc);
            float dx = Unsafe.ReadUnaligned<float>(ref xb);
            sum += dx * HalfAt(ref Unsafe.Add(ref wb, 208)) * (isum - 32 * ioff);
        }
        return sum;

        // 32 quants (two sub-blocks of 16: scales g and g + 1) times their activations, scaled: 8 int32 lanes.
        static Vector256<int> Group(Vector256<byte> q, ref byte xb, int at, int g, ref byte wb)
        {
            var x8 = Vector256.LoadUnsafe(ref xb, (nuint)(4 + at)).AsSByte();
            var scale = Vector256.Create(Vector128.Create((short)(sbyte)Unsafe.Add(ref wb, 192 + g)), Vector128.Create((short)(sbyte)Unsafe.Add(ref wb, 193 + g)));
            return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, x8), scale);
        }
    }

    // ---- TQ2_0 ----
    // Codes c in 0..2 stand for c - 1: isum = sum c * q8 - sum q8 (the latter from Q8_K's sums).

    public static float DotTQ2_0Scalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * TQ2_0.BlockBytes, TQ2_0.BlockBytes);
            var xb = x.Slice(b * Q8KBytes, Q8KBytes);
            int isum = 0, xsum = 0;
            for (int h = 0; h < 2; h++)
                for (int n = 0; n < 4; n++)
                    for (int m = 0; m < 32; m++)
                        isum += ((wb[32 * h + m] >> (2 * n)) & 3) * Q8Quant(xb, 128 * h + 32 * n + m);
            for (int g = 0; g < 16; g++) xsum += Q8Sum16(xb, g);
            sum += Q8Scale(xb) * ReadHalf(wb, 64) * (isum - xsum);
        }
        return sum;
    }

    public static float DotTQ2_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        if (!Avx2.IsSupported) return DotTQ2_0Scalar(w, x, blocks);
        ref byte wr = ref MemoryMarshal.GetReference(w);
        ref byte xr = ref MemoryMarshal.GetReference(x);
        var m2 = Vector256.Create((byte)3);
        var ones = Vector256.Create((short)1);
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ref byte wb = ref Unsafe.Add(ref wr, b * TQ2_0.BlockBytes);
            ref byte xb = ref Unsafe.Add(ref xr, b * Q8KBytes);
            var acc = Vector256<short>.Zero; // at most 8 pair sums of 2 * 2 * 127 per lane: fits int16
            for (int h = 0; h < 2; h++)
            {
                var codes = Vector256.LoadUnsafe(ref wb, (nuint)(32 * h)).AsUInt16();
                for (int n = 0; n < 4; n++)
                {
                    var c = Vector256.ShiftRightLogical(codes, 2 * n).AsByte() & m2;
                    acc += Avx2.MultiplyAddAdjacent(c, Vector256.LoadUnsafe(ref xb, (nuint)(4 + 128 * h + 32 * n)).AsSByte());
                }
            }
            int isum = Vector256.Sum(Avx2.MultiplyAddAdjacent(acc, ones));
            var bs = Vector256.LoadUnsafe(ref Unsafe.As<byte, short>(ref Unsafe.Add(ref xb, 260)));
            int xsum = Vector256.Sum(Avx2.MultiplyAddAdjacent(bs, ones));
            sum += Unsafe.ReadUnaligned<float>(ref xb) * HalfAt(ref Unsafe.Add(ref wb, 64)) * (isum - xsum);
        }
        return sum;
    }
}
