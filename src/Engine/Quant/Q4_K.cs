using static ManagedTensor.Quant.QuantMath;

namespace ManagedTensor.Quant;

/// <summary>
/// Q4_K: super-blocks of 256 values = f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) pairs for 8 sub-blocks of 32,
/// 128 bytes of nibbles; x = d * sc * q - dmin * m with q in 0..15 (144 bytes, 4.5 bits per value). Byte l of each
/// 32-byte chunk c holds value 64c + l in its low nibble and 64c + 32 + l in its high one.
/// Dot products run against Q8_K activations (<see cref="KQuantDots"/>).
/// </summary>
public static class Q4_K
{
    public const int BlockSize = 256, BlockBytes = 2 + 2 + 12 + 128;

    public static readonly BlockFormat Format = new(DType.Q4_K, BlockSize, BlockBytes, Decode)
    {
        GgmlType = 12,
        Encode = Encode,
        DotType = DType.Q8_K,
        Dot = KQuantDots.DotQ4_K,
        DotReference = KQuantDots.DotQ4_KScalar,
        DotInReferenceOrder = true,
    };

    /// <summary>ggml's dequantize_row_q4_K.</summary>
    public static void Decode(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            var blk = src.Slice(b * BlockBytes, BlockBytes);
            float d = ReadHalf(blk, 0), dmin = ReadHalf(blk, 2);
            var scales = blk.Slice(4, 12);
            var q = blk.Slice(16, 128);
            var y = dst.Slice(b * BlockSize, BlockSize);
            for (int c = 0; c < 4; c++)
            {
                var (sc1, m1) = ScaleMinK4(2 * c, scales);
                var (sc2, m2) = ScaleMinK4(2 * c + 1, scales);
                float d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2;
                for (int l = 0; l < 32; l++)
                {
                    y[64 * c + l] = d1 * (q[32 * c + l] & 0x0F) - min1;
                    y[64 * c + 32 + l] = d2 * (q[32 * c + l] >> 4) - min2;
                }
            }
        }
    }

    /// <summary>
    /// ggml's quantize_row_q4_K_ref: per sub-block of 32 a (scale, min) from make_qkx2_quants (weights av_x + |x|,
    /// 21 trial scales from nmax - 1 up by 0.1), both rounded to 6 bits against the super-block's largest, then each
    /// value rounded against its decoded sub-block scale and min.
    /// </summary>
    public static void Encode(ReadOnlySpan<float> src, Span<byte> dst)
    {
        Span<float> subScale = stackalloc float[8], subMin = stackalloc float[8];
        Span<byte> L = stackalloc byte[BlockSize];
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            var x = src.Slice(b * BlockSize, BlockSize);
            var blk = dst.Slice(b * BlockBytes, BlockBytes);
            KQuantScales(x, blk, 15, -1f, 0.1f, 20, subScale, subMin, L);
            for (int j = 0; j < 8; j++)
            {
                float d = subScale[j];
                if (d == 0) continue; // ggml keeps the sub-block's first-pass quants
                float dm = subMin[j];
                for (int i = 0; i < 32; i++) L[32 * j + i] = (byte)Math.Clamp(NearestInt((x[32 * j + i] + dm) / d), 0, 15);
            }
            var q = blk.Slice(16, 128);
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++) q[32 * c + l] = (byte)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
        }
    }
}
