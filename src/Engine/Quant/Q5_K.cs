using static ManagedTensor.Quant.QuantMath;

namespace ManagedTensor.Quant;

/// <summary>
/// Q5_K: super-blocks of 256 values = f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) pairs (as Q4_K), 32 bytes of
/// high bits, 128 bytes of low nibbles; x = d * sc * q - dmin * m with q in 0..31 (176 bytes, 5.5 bits per value).
/// Value 64c + l (c = 0..3, l = 0..31) has its low 4 bits in the low nibble of qs[32c + l] and its fifth bit in bit
/// 2c of qh[l]; value 64c + 32 + l the high nibble and bit 2c + 1.
/// </summary>
public static class Q5_K
{
    public const int BlockSize = 256, BlockBytes = 2 + 2 + 12 + 32 + 128;

    public static readonly BlockFormat Format = new(DType.Q5_K, BlockSize, BlockBytes, Decode)
    {
        GgmlType = 13,
        Encode = Encode,
        DotType = DType.Q8_K,
        Dot = KQuantDots.DotQ5_K,
        DotReference = KQuantDots.DotQ5_KScalar,
        DotInReferenceOrder = true,
    };

    /// <summary>ggml's dequantize_row_q5_K.</summary>
    public static void Decode(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            var blk = src.Slice(b * BlockBytes, BlockBytes);
            float d = ReadHalf(blk, 0), dmin = ReadHalf(blk, 2);
            var scales = blk.Slice(4, 12);
            var qh = blk.Slice(16, 32);
            var ql = blk.Slice(48, 128);
            var y = dst.Slice(b * BlockSize, BlockSize);
            for (int c = 0; c < 4; c++)
            {
                var (sc1, m1) = ScaleMinK4(2 * c, scales);
                var (sc2, m2) = ScaleMinK4(2 * c + 1, scales);
                float d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2;
                int u1 = 1 << (2 * c), u2 = 2 << (2 * c);
                for (int l = 0; l < 32; l++)
                {
                    y[64 * c + l] = d1 * ((ql[32 * c + l] & 0x0F) + ((qh[l] & u1) != 0 ? 16 : 0)) - min1;
                    y[64 * c + 32 + l] = d2 * ((ql[32 * c + l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - min2;
                }
            }
        }
    }

    /// <summary>ggml's quantize_row_q5_K_ref: Q4_K's recipe with q in 0..31 and 16 trial scales from nmax - 0.5 up by 0.1.</summary>
    public static void Encode(ReadOnlySpan<float> src, Span<byte> dst)
    {
        Span<float> subScale = stackalloc float[8], subMin = stackalloc float[8];
        Span<byte> L = stackalloc byte[BlockSize];
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            var x = src.Slice(b * BlockSize, BlockSize);
            var blk = dst.Slice(b * BlockBytes, BlockBytes);
            KQuantScales(x, blk, 31, -0.5f, 0.1f, 15, subScale, subMin, L);
            for (int j = 0; j < 8; j++)
            {
                float d = subScale[j];
                if (d == 0) continue;
                float dm = subMin[j];
                for (int i = 0; i < 32; i++) L[32 * j + i] = (byte)Math.Clamp(NearestInt((x[32 * j + i] + dm) / d), 0, 31);
            }
            var qh = blk.Slice(16, 32);
            var ql = blk.Slice(48, 128);
            qh.Clear();
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++)
                {
                    int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
                    if (l1 > 15) { l1 -= 16; qh[l] |= (byte)(1 << (2 * c)); }
                    if (l2 > 15) { l2 -= 16; qh[l] |= (byte)(2 << (2 * c)); }
                    ql[32 * c + l] = (byte)(l1 | (l2 << 4));
                }
        }
    }
}
