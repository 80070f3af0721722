using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static ManagedTensor.Quant.QuantMath;

namespace ManagedTensor.Quant;

/// <summary>
/// Dot products of the 5-bit 32-value formats with Q8_0 activations (ggml's vec_dot_q5_0_q8_0 and, with Q8_0's sum
/// taken on the fly instead of Q8_1's stored one, vec_dot_q5_1_q8_1). Per block an exact integer sum, then one float
/// step; the AVX2 versions sum the same integers and take the same float step, so they equal the plain loops bit for bit.
/// </summary>
internal static class LegacyDots
{
    private const int Q8Bytes = Q8_0.BlockBytes;

    public static float DotQ5_0Scalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        Span<int> q = stackalloc int[32];
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * Q5_0.BlockBytes, Q5_0.BlockBytes);
            var xb = x.Slice(b * Q8Bytes, Q8Bytes);
            Q5_0.Unpack(wb, q);
            int acc = 0;
            for (int j = 0; j < 32; j++) acc += (q[j] - 16) * (sbyte)xb[2 + j];
            sum += ReadHalf(wb, 0) * ReadHalf(xb, 0) * acc;
        }
        return sum;
    }

    public static float DotQ5_1Scalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        Span<int> q = stackalloc int[32];
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * Q5_1.BlockBytes, Q5_1.BlockBytes);
            var xb = x.Slice(b * Q8Bytes, Q8Bytes);
            Q5_1.Unpack(wb, q);
            int acc = 0, xsum = 0;
            for (int j = 0; j < 32; j++)
            {
                acc += q[j] * (sbyte)xb[2 + j];
                xsum += (sbyte)xb[2 + j];
            }
            float dx = ReadHalf(xb, 0);
            sum += ReadHalf(wb, 0) * dx * acc + ReadHalf(wb, 2) * dx * xsum;
        }
        return sum;
    }

    public static float DotQ5_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        if (!Avx2.IsSupported) return DotQ5_0Scalar(w, x, blocks);
        ref byte wr = ref MemoryMarshal.GetReference(w);
        ref byte xr = ref MemoryMarshal.GetReference(x);
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ref byte wb = ref Unsafe.Add(ref wr, b * Q5_0.BlockBytes);
            ref byte xb = ref Unsafe.Add(ref xr, b * Q8Bytes);
            var q = Unpack5(ref Unsafe.Add(ref wb, 2)).AsSByte() - Vector256.Create((sbyte)16);
            var x8 = Vector256.LoadUnsafe(ref Unsafe.Add(ref xb, 2)).AsSByte();
            sum += HalfAt(ref wb) * HalfAt(ref xb) * Q8_0.DotI8x32(q, x8);
        }
        return sum;
    }

    public static float DotQ5_1(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        if (!Avx2.IsSupported) return DotQ5_1Scalar(w, x, blocks);
        ref byte wr = ref MemoryMarshal.GetReference(w);
        ref byte xr = ref MemoryMarshal.GetReference(x);
        var ones16 = Vector256.Create((short)1);
        var ones8 = Vector256.Create((byte)1);
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ref byte wb = ref Unsafe.Add(ref wr, b * Q5_1.BlockBytes);
            ref byte xb = ref Unsafe.Add(ref xr, b * Q8Bytes);
            var q = Unpack5(ref Unsafe.Add(ref wb, 4));
            var x8 = Vector256.LoadUnsafe(ref Unsafe.Add(ref xb, 2)).AsSByte();
            int acc = Vector256.Sum(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, x8), ones16));
            int xsum = Vector256.Sum(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(ones8, x8), ones16));
            float dx = HalfAt(ref xb);
            sum += HalfAt(ref wb) * dx * acc + HalfAt(ref Unsafe.Add(ref wb, 2)) * dx * xsum;
        }
        return sum;
    }

    /// <summary>
    /// 32 five-bit values 0..31 from a 32-bit qh followed by 16 bytes of nibbles (Q5_0's layout after d): value j takes
    /// bit j of qh. ggml's bytes_from_bits_32: each byte i gets byte i / 8 of qh, keeps bit i % 8, and becomes 0x10 where set.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Unpack5(ref byte qhAndNibbles)
    {
        uint qh = Unsafe.ReadUnaligned<uint>(ref qhAndNibbles);
        var spread = Avx2.Shuffle(Vector256.Create(qh).AsByte(),
            Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        var bit = Vector256.Create((byte)1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        var high = Vector256.Equals(spread & bit, bit) & Vector256.Create((byte)0x10);
        var packed = Vector128.LoadUnsafe(ref Unsafe.Add(ref qhAndNibbles, 4));
        var m4 = Vector128.Create((byte)0x0F);
        var nibbles = Vector256.Create(packed & m4, Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & m4);
        return nibbles | high;
    }
}
