using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedTensor.Models.Formats;

/// <summary>ggml's tensor type codes (the subset read or written here keeps ggml's numbering).</summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q8_0 = 8,
    Q4_K = 12,
    BF16 = 30,
}

/// <summary>
/// Block (de)quantization exactly as ggml's reference C code (ggml-quants.c) does it.
/// A quantized row is a sequence of fixed-size blocks; each block stores a scale and small integers.
///   Q8_0: 32 values = f16 d, int8 q[32];                  x = q * d                      (34 bytes)
///   Q4_0: 32 values = f16 d, uint8 nibbles[16];           x = (q - 8) * d                (18 bytes)
///         low nibble of byte j is element j, high nibble is element j + 16
///   Q4_K: 256 values = f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) pairs for 8 sub-blocks of 32,
///         uint8 nibbles[128];                             x = d*sc*q - dmin*m            (144 bytes)
/// </summary>
public static class Quant
{
    public const int QK8_0 = 32, QK4_0 = 32, QK_K = 256;
    public const int Q8_0Bytes = 2 + 32, Q4_0Bytes = 2 + 16, Q4_KBytes = 2 + 2 + 12 + 128;

    /// <summary>Elements per block and bytes per block of <paramref name="type"/>.</summary>
    public static (int BlockSize, int BlockBytes) Layout(GgmlType type) => type switch
    {
        GgmlType.F32 => (1, 4),
        GgmlType.F16 => (1, 2),
        GgmlType.BF16 => (1, 2),
        GgmlType.Q8_0 => (QK8_0, Q8_0Bytes),
        GgmlType.Q4_0 => (QK4_0, Q4_0Bytes),
        GgmlType.Q4_K => (QK_K, Q4_KBytes),
        _ => throw new NotSupportedException($"ggml type {(uint)type} is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_K are)"),
    };

    public static bool IsSupported(uint code) => Enum.IsDefined(typeof(GgmlType), code);

    /// <summary>Bytes taken by <paramref name="count"/> elements (count must be a multiple of the block size).</summary>
    public static long ByteCount(GgmlType type, long count)
    {
        var (bs, bb) = Layout(type);
        if (count % bs != 0) throw new ArgumentException($"{type}: {count} elements is not a multiple of the block size {bs}");
        return count / bs * bb;
    }

    private static float Half(ReadOnlySpan<byte> b) => (float)BinaryPrimitives.ReadHalfLittleEndian(b);

    /// <summary>Decodes <c>dst.Length</c> elements of <paramref name="type"/> from <paramref name="src"/>.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
                break;
            case GgmlType.F16:
                System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(src)[..dst.Length], dst);
                break;
            case GgmlType.BF16:
                // bf16 is the top half of a float32.
                for (int i = 0; i < dst.Length; i++) dst[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]) << 16);
                break;
            case GgmlType.Q8_0: DequantizeQ8_0(src, dst); break;
            case GgmlType.Q4_0: DequantizeQ4_0(src, dst); break;
            case GgmlType.Q4_K: DequantizeQ4_K(src, dst); break;
            default: Layout(type); break; // throws for unknown types
        }
    }

    public static void DequantizeQ8_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / QK8_0; b++)
        {
            var blk = src.Slice(b * Q8_0Bytes, Q8_0Bytes);
            float d = Half(blk);
            for (int j = 0; j < QK8_0; j++) dst[b * QK8_0 + j] = (sbyte)blk[2 + j] * d;
        }
    }

    public static void DequantizeQ4_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / QK4_0; b++)
        {
            var blk = src.Slice(b * Q4_0Bytes, Q4_0Bytes);
            float d = Half(blk);
            var y = dst.Slice(b * QK4_0, QK4_0);
            if (Avx2.IsSupported)
            {
                // Same values as the loop below: (q - 8) is exact in float either way.
                var packed = Vector128.LoadUnsafe(ref Unsafe.AsRef(in blk[2]));
                var mask = Vector128.Create((byte)0x0F);
                NibblesToFloats(packed & mask, d, y);                                                    // elements 0..15
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
        var first = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q));                          // bytes 0..7
        var second = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(q, 8))); // bytes 8..15
        ((first - eight) * dv).StoreUnsafe(ref y[0]);
        ((second - eight) * dv).StoreUnsafe(ref y[8]);
    }

    /// <summary>ggml's get_scale_min_k4: the j-th 6-bit (scale, min) pair packed in 12 bytes.</summary>
    private static (int Scale, int Min) ScaleMinK4(int j, ReadOnlySpan<byte> q) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    /// <summary>ggml's dequantize_row_q4_K.</summary>
    public static void DequantizeQ4_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / QK_K; b++)
        {
            var blk = src.Slice(b * Q4_KBytes, Q4_KBytes);
            float d = Half(blk), dmin = Half(blk[2..]);
            var scales = blk.Slice(4, 12);
            var q = blk.Slice(16, 128);
            var y = dst.Slice(b * QK_K, QK_K);
            int yi = 0, qi = 0;
            // Four chunks of 64 values: the low nibbles of 32 bytes, then their high nibbles, each with its own scale and min.
            for (int s = 0; s < 8; s += 2)
            {
                var (sc1, m1) = ScaleMinK4(s, scales);
                var (sc2, m2) = ScaleMinK4(s + 1, scales);
                float d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2;
                for (int l = 0; l < 32; l++) y[yi++] = d1 * (q[qi + l] & 0x0F) - min1;
                for (int l = 0; l < 32; l++) y[yi++] = d2 * (q[qi + l] >> 4) - min2;
                qi += 32;
            }
        }
    }

    /// <summary>ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = round(x / d) (half away from zero).</summary>
    public static void QuantizeQ8_0(ReadOnlySpan<float> src, Span<byte> dst)
    {
        if (src.Length % QK8_0 != 0) throw new ArgumentException($"Q8_0: row length {src.Length} is not a multiple of {QK8_0}");
        for (int b = 0; b < src.Length / QK8_0; b++)
        {
            var x = src.Slice(b * QK8_0, QK8_0);
            var blk = dst.Slice(b * Q8_0Bytes, Q8_0Bytes);
            float amax = 0;
            foreach (float v in x) amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(blk, (Half)d);
            for (int j = 0; j < QK8_0; j++) blk[2 + j] = (byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>
    /// ggml's quantize_row_q4_0_ref: d = (the value of largest magnitude, with its sign) / -8, so that value maps to
    /// q = 0 exactly; q = min(15, trunc(x / d + 8.5)).
    /// </summary>
    public static void QuantizeQ4_0(ReadOnlySpan<float> src, Span<byte> dst)
    {
        if (src.Length % QK4_0 != 0) throw new ArgumentException($"Q4_0: row length {src.Length} is not a multiple of {QK4_0}");
        for (int b = 0; b < src.Length / QK4_0; b++)
        {
            var x = src.Slice(b * QK4_0, QK4_0);
            var blk = dst.Slice(b * Q4_0Bytes, Q4_0Bytes);
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

    /// <summary>The types <see cref="Quantize"/> can write (what `mt quantize --type` and `mt bench --types` offer).</summary>
    public static readonly GgmlType[] Encodable = [GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0];

    /// <summary>Encodes float32 values as <paramref name="type"/>, one of <see cref="Encodable"/>.</summary>
    public static byte[] Quantize(GgmlType type, ReadOnlySpan<float> src)
    {
        var dst = new byte[ByteCount(type, src.Length)];
        switch (type)
        {
            case GgmlType.F32: for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(dst.AsSpan(4 * i), src[i]); break;
            case GgmlType.F16: for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(dst.AsSpan(2 * i), (Half)src[i]); break;
            case GgmlType.Q8_0: QuantizeQ8_0(src, dst); break;
            case GgmlType.Q4_0: QuantizeQ4_0(src, dst); break;
            default: throw new NotSupportedException($"quantizing to {type} is not supported (F32, F16, Q8_0, Q4_0 are)");
        }
        return dst;
    }

    /// <summary>
    /// ggml's vec_dot_q4_0_q8_0: the dot product of a Q4_0 row with activations already quantized to Q8_0,
    /// block by block in integers: sum_b d4_b * d8_b * sum_j (q4_j - 8) * q8_j.
    /// The integer block sums use AVX2 when available (same result as the scalar loop: integer sums are exact,
    /// and the float accumulation over blocks runs in the same order).
    /// </summary>
    public static float VecDotQ4_0Q8_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        if (!Avx2.IsSupported) return VecDotQ4_0Q8_0Scalar(w, x, blocks);
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * Q4_0Bytes, Q4_0Bytes);
            var xb = x.Slice(b * Q8_0Bytes, Q8_0Bytes);
            // Unpack 16 bytes of nibbles to 32 signed values (low nibbles are elements 0..15, high 16..31), minus 8.
            var packed = Vector128.LoadUnsafe(ref Unsafe.AsRef(in wb[2]));
            var mask = Vector128.Create((byte)0x0F);
            var lo = packed & mask;
            var hi = Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask;
            var qw = Vector256.Create(lo, hi).AsSByte() - Vector256.Create((sbyte)8);
            var qx = Vector256.LoadUnsafe(ref Unsafe.As<byte, sbyte>(ref Unsafe.AsRef(in xb[2])));
            sum += Half(wb) * Half(xb) * DotI8x32(qw, qx);
        }
        return sum;
    }

    /// <summary>
    /// Sum of 32 int8 products with AVX2 (ggml's mul_sum_i8_pairs): maddubs needs an unsigned operand, so it multiplies
    /// |a| by b carrying a's sign, giving int16 pair sums, then madd with ones widens them to int32.
    /// Pair sums stay below int16's limit unless both operands hold -128 (not produced by the quantizers here).
    /// </summary>
    private static int DotI8x32(Vector256<sbyte> a, Vector256<sbyte> b)
    {
        var pairs = Avx2.MultiplyAddAdjacent(Avx2.Sign(a, a).AsByte(), Avx2.Sign(b, a)); // (16) int16
        var quads = Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));         // (8) int32
        return Vector256.Sum(quads);
    }

    /// <summary>The plain loop of <see cref="VecDotQ4_0Q8_0"/>, kept as its reference.</summary>
    public static float VecDotQ4_0Q8_0Scalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * Q4_0Bytes, Q4_0Bytes);
            var xb = x.Slice(b * Q8_0Bytes, Q8_0Bytes);
            int acc = 0;
            for (int j = 0; j < 16; j++)
            {
                int q = wb[2 + j];
                acc += ((q & 0x0F) - 8) * (sbyte)xb[2 + j] + ((q >> 4) - 8) * (sbyte)xb[2 + j + 16];
            }
            sum += Half(wb) * Half(xb) * acc;
        }
        return sum;
    }

    /// <summary>ggml's vec_dot_q8_0_q8_0: sum_b dw_b * dx_b * sum_j qw_j * qx_j (AVX2 block sums when available).</summary>
    public static float VecDotQ8_0Q8_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        if (!Avx2.IsSupported) return VecDotQ8_0Q8_0Scalar(w, x, blocks);
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * Q8_0Bytes, Q8_0Bytes);
            var xb = x.Slice(b * Q8_0Bytes, Q8_0Bytes);
            var qw = Vector256.LoadUnsafe(ref Unsafe.As<byte, sbyte>(ref Unsafe.AsRef(in wb[2])));
            var qx = Vector256.LoadUnsafe(ref Unsafe.As<byte, sbyte>(ref Unsafe.AsRef(in xb[2])));
            sum += Half(wb) * Half(xb) * DotI8x32(qw, qx);
        }
        return sum;
    }

    /// <summary>The plain loop of <see cref="VecDotQ8_0Q8_0"/>.</summary>
    public static float VecDotQ8_0Q8_0Scalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * Q8_0Bytes, Q8_0Bytes);
            var xb = x.Slice(b * Q8_0Bytes, Q8_0Bytes);
            int acc = 0;
            for (int j = 0; j < QK8_0; j++) acc += (sbyte)wb[2 + j] * (sbyte)xb[2 + j];
            sum += Half(wb) * Half(xb) * acc;
        }
        return sum;
    }
}
