using static ManagedTensor.Quant.QuantMath;

namespace ManagedTensor.Quant;

/// <summary>
/// Q6_K: super-blocks of 256 values = 128 bytes of low nibbles (ql), 64 bytes of high 2-bit pairs (qh), 16 int8 scales
/// (one per 16 values), f16 d last; x = d * scale * (q - 32) with q in 0..63 (210 bytes, 6.5625 bits per value).
/// In each half of 128 values (h = 0, 1; ql from 64h, qh from 32h), for l = 0..31: values l and l + 64 take the low
/// and high nibble of ql[l], values l + 32 and l + 96 those of ql[l + 32], and their top two bits are bits 0-1, 4-5,
/// 2-3 and 6-7 of qh[l] (in the order l, l + 64, l + 32, l + 96: bits 0, 4, 2, 6).
/// </summary>
public static class Q6_K
{
    public const int BlockSize = 256, BlockBytes = 128 + 64 + 16 + 2;

    public static readonly BlockFormat Format = new(DType.Q6_K, BlockSize, BlockBytes, Decode)
    {
        GgmlType = 14,
        Encode = Encode,
        DotType = DType.Q8_K,
        Dot = KQuantDots.DotQ6_K,
        DotReference = KQuantDots.DotQ6_KScalar,
        DotInReferenceOrder = true,
    };

    /// <summary>ggml's dequantize_row_q6_K.</summary>
    public static void Decode(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            var blk = src.Slice(b * BlockBytes, BlockBytes);
            float d = ReadHalf(blk, 208);
            var y = dst.Slice(b * BlockSize, BlockSize);
            for (int h = 0; h < 2; h++)
            {
                var ql = blk.Slice(64 * h, 64);
                var qh = blk.Slice(128 + 32 * h, 32);
                var sc = blk.Slice(192 + 8 * h, 8);
                var yh = y.Slice(128 * h, 128);
                for (int l = 0; l < 32; l++)
                {
                    int s = l / 16;
                    int q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    yh[l] = d * (sbyte)sc[s] * q1;
                    yh[l + 32] = d * (sbyte)sc[s + 2] * q2;
                    yh[l + 64] = d * (sbyte)sc[s + 4] * q3;
                    yh[l + 96] = d * (sbyte)sc[s + 6] * q4;
                }
            }
        }
    }

    /// <summary>
    /// ggml's quantize_row_q6_K_ref: a scale per 16 values from make_qx_quants (nmax 32, weights x^2), the scales
    /// rounded to int8 against the one of largest magnitude (d = that scale / -128), then each value rounded against
    /// its decoded scale to -32..31.
    /// </summary>
    public static void Encode(ReadOnlySpan<float> src, Span<byte> dst)
    {
        Span<byte> L = stackalloc byte[BlockSize];
        Span<float> scales = stackalloc float[16];
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            var x = src.Slice(b * BlockSize, BlockSize);
            var blk = dst.Slice(b * BlockBytes, BlockBytes);
            float maxScale = 0, maxAbsScale = 0;
            for (int ib = 0; ib < 16; ib++)
            {
                float scale = MakeQxQuants(16, 32, x.Slice(16 * ib, 16), L.Slice(16 * ib, 16));
                scales[ib] = scale;
                float abs = MathF.Abs(scale);
                if (abs > maxAbsScale) { maxAbsScale = abs; maxScale = scale; }
            }
            blk.Clear();
            if (maxAbsScale < 1e-15f) continue; // all zero: d = 0
            float iscale = -128f / maxScale;
            WriteHalf(blk, 208, 1 / iscale);
            var sc = blk.Slice(192, 16);
            for (int ib = 0; ib < 16; ib++) sc[ib] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * scales[ib]));
            float dh = ReadHalf(blk, 208);
            for (int j = 0; j < 16; j++)
            {
                float d = dh * (sbyte)sc[j];
                if (d == 0) continue;
                for (int i = 0; i < 16; i++) L[16 * j + i] = (byte)(Math.Clamp(NearestInt(x[16 * j + i] / d), -32, 31) + 32);
            }
            for (int h = 0; h < 2; h++)
            {
                var ql = blk.Slice(64 * h, 64);
                var qh = blk.Slice(128 + 32 * h, 32);
                var Lh = L.Slice(128 * h, 128);
                for (int l = 0; l < 32; l++)
                {
                    ql[l] = (byte)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                    ql[l + 32] = (byte)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                    qh[l] = (byte)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
                }
            }
        }
    }
}
