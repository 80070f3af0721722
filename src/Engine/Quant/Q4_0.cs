using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedTensor.Quant;

/// <summary>
/// Q4_0: blocks of 32 values = f16 scale d, 16 bytes of nibbles; x = (q - 8) * d (18 bytes, 4.5 bits per value).
/// The low nibble of byte j is value j, the high nibble value j + 16.
/// </summary>
public static class Q4_0
{
    public const int BlockSize = 32, BlockBytes = 2 + 16;

    public static readonly BlockFormat Format = new(DType.Q4_0, BlockSize, BlockBytes, Decode)
    {
        GgmlType = 2,
        Encode = Encode,
        DotType = DType.Q8_0,
        Dot = Dot,
        DotReference = DotScalar,
    };

    public static void Decode(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            var blk = src.Slice(b * BlockBytes, BlockBytes);
            float d = (float)BinaryPrimitives.ReadHalfLittleEndian(blk);
            var y = dst.Slice(b * BlockSize, BlockSize);
            if (Avx2.IsSupported)
            {
                // Same values as the loop below: (q - 8) is exact in float either way.
                var packed = Vector128.LoadUnsafe(ref Unsafe.AsRef(in blk[2]));
                var mask = Vector128.Create((byte)0x0F);
                NibblesToFloats(packed & mask, d, y);                                                        // values 0..15
                NibblesToFloats(Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask, d, y[16..]); // 16..31
                continue;
            }
            for (int j = 0; j < 16; j++)
            {
                y[j] = ((blk[2 + j] & 0x0F) - 8) * d;
                y[j + 16] = ((blk[2 + j] >> 4) - 8) * d;
            }
        }
    }

    /// <summary>y[0..16] = (q - 8) * d for 16 values 0..15 held in bytes.</summary>
    private static void NibblesToFloats(Vector128<byte> q, float d, Span<float> y)
    {
        var dv = Vector256.Create(d);
        var eight = Vector256.Create(8f);
        var first = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q));                              // bytes 0..7
        var second = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(q, 8))); // bytes 8..15
        ((first - eight) * dv).StoreUnsafe(ref y[0]);
        ((second - eight) * dv).StoreUnsafe(ref y[8]);
    }

    /// <summary>
    /// ggml's quantize_row_q4_0_ref: d = (the value of largest magnitude, with its sign) / -8, so that value maps to
    /// q = 0 exactly; q = min(15, trunc(x / d + 8.5)).
    /// </summary>
    public static void Encode(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            var x = src.Slice(b * BlockSize, BlockSize);
            var blk = dst.Slice(b * BlockBytes, BlockBytes);
            float amax = 0, max = 0;
            foreach (float v in x)
                if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
            float d = max / -8f, id = d != 0 ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(blk, (Half)d);
            for (int j = 0; j < 16; j++)
            {
                int lo = Math.Min(15, (int)(x[j] * id + 8.5f));
                int hi = Math.Min(15, (int)(x[j + 16] * id + 8.5f));
                blk[2 + j] = (byte)(lo | (hi << 4));
            }
        }
    }

    /// <summary>
    /// ggml's vec_dot_q4_0_q8_0: the dot product of a Q4_0 row with activations encoded as Q8_0, block by block in
    /// integers: sum_b d4_b * d8_b * sum_j (q4_j - 8) * q8_j. The AVX2 loop keeps each block's integer sum in 8 int32
    /// lanes and accumulates (d4 * d8) * lanes in two float vectors, as ggml's does: exact integer sums, float additions
    /// in another order than <see cref="DotScalar"/>'s.
    /// </summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        if (!Avx2.IsSupported || !Fma.IsSupported) return DotScalar(w, x, blocks);
        ref byte wr = ref MemoryMarshal.GetReference(w);
        ref byte xr = ref MemoryMarshal.GetReference(x);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        Span<float> d = stackalloc float[8];
        int b = 0;
        // Groups of 8 blocks: their 16 scales converted in two vectors, then 8 blocks against the products d[i].
        for (; b + 8 <= blocks; b += 8)
        {
            ref byte wg = ref Unsafe.Add(ref wr, b * BlockBytes);
            ref byte xg = ref Unsafe.Add(ref xr, b * Q8_0.BlockBytes);
            (QuantMath.Halves8(ref wg, BlockBytes) * QuantMath.Halves8(ref xg, Q8_0.BlockBytes)).StoreUnsafe(ref d[0]);
            for (int i = 0; i < 8; i += 2)
            {
                acc0 = Block(ref Unsafe.Add(ref wg, i * BlockBytes), ref Unsafe.Add(ref xg, i * Q8_0.BlockBytes), d[i], acc0);
                acc1 = Block(ref Unsafe.Add(ref wg, (i + 1) * BlockBytes), ref Unsafe.Add(ref xg, (i + 1) * Q8_0.BlockBytes), d[i + 1], acc1);
            }
        }
        for (; b < blocks; b++)
        {
            ref byte wb = ref Unsafe.Add(ref wr, b * BlockBytes);
            ref byte xb = ref Unsafe.Add(ref xr, b * Q8_0.BlockBytes);
            acc0 = Block(ref wb, ref xb, QuantMath.HalfAt(ref wb) * QuantMath.HalfAt(ref xb), acc0);
        }
        return Vector256.Sum(acc0 + acc1);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector256<float> Block(ref byte wb, ref byte xb, float d, Vector256<float> acc)
        {
            // 16 bytes of nibbles to 32 values: low nibbles are values 0..15, high ones 16..31; minus 8.
            var packed = Vector128.LoadUnsafe(ref Unsafe.Add(ref wb, 2));
            var mask = Vector128.Create((byte)0x0F);
            var q = Vector256.Create(packed & mask, Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask).AsSByte() - Vector256.Create((sbyte)8);
            var qx = Vector256.LoadUnsafe(ref Unsafe.Add(ref xb, 2)).AsSByte();
            return Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q8_0.DotI8Lanes(q, qx)), Vector256.Create(d), acc);
        }
    }

    /// <summary>The plain loop of <see cref="Dot"/>, kept as its reference.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * BlockBytes, BlockBytes);
            var xb = x.Slice(b * Q8_0.BlockBytes, Q8_0.BlockBytes);
            int acc = 0;
            for (int j = 0; j < 16; j++)
            {
                int q = wb[2 + j];
                acc += ((q & 0x0F) - 8) * (sbyte)xb[2 + j] + ((q >> 4) - 8) * (sbyte)xb[2 + j + 16];
            }
            sum += (float)BinaryPrimitives.ReadHalfLittleEndian(wb) * (float)BinaryPrimitives.ReadHalfLittleEndian(xb) * acc;
        }
        return sum;
    }
}
