using System.Buffers.Binary;

namespace ManagedTensor.Quant;

/// <summary>
/// Q4_K: super-blocks of 256 values = f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) pairs for 8 sub-blocks
/// of 32, 128 bytes of nibbles; x = d * sc * q - dmin * m (144 bytes, 4.5 bits per value).
/// </summary>
public static class Q4_K
{
    public const int BlockSize = 256, BlockBytes = 2 + 2 + 12 + 128;

    public static readonly BlockFormat Format = new(DType.Q4_K, BlockSize, BlockBytes, Decode) { GgmlType = 12 };

    /// <summary>ggml's get_scale_min_k4: the j-th 6-bit (scale, min) pair packed in 12 bytes.</summary>
    internal static (int Scale, int Min) ScaleMin(int j, ReadOnlySpan<byte> q) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    /// <summary>ggml's dequantize_row_q4_K.</summary>
    public static void Decode(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            var blk = src.Slice(b * BlockBytes, BlockBytes);
            float d = (float)BinaryPrimitives.ReadHalfLittleEndian(blk), dmin = (float)BinaryPrimitives.ReadHalfLittleEndian(blk[2..]);
            var scales = blk.Slice(4, 12);
            var q = blk.Slice(16, 128);
            var y = dst.Slice(b * BlockSize, BlockSize);
            int yi = 0, qi = 0;
            // Four chunks of 64 values: the low nibbles of 32 bytes, then their high nibbles, each with its own scale and min.
            for (int s = 0; s < 8; s += 2)
            {
                var (sc1, m1) = ScaleMin(s, scales);
                var (sc2, m2) = ScaleMin(s + 1, scales);
                float d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2;
                for (int l = 0; l < 32; l++) y[yi++] = d1 * (q[qi + l] & 0x0F) - min1;
                for (int l = 0; l < 32; l++) y[yi++] = d2 * (q[qi + l] >> 4) - min2;
                qi += 32;
            }
        }
    }
}
