using System.Buffers.Binary;
using static ManagedTensor.Quant.QuantMath;

namespace ManagedTensor.Quant;

/// <summary>
/// Q5_0: blocks of 32 values = f16 d, 4 bytes of fifth bits, 16 bytes of nibbles; x = (q - 16) * d with q in 0..31
/// (22 bytes, 5.5 bits per value). Value j (0..15) is the low nibble of byte j plus bit j of the 32-bit qh, value
/// j + 16 the high nibble plus bit j + 16.
/// </summary>
public static class Q5_0
{
    public const int BlockSize = 32, BlockBytes = 2 + 4 + 16;

    public static readonly BlockFormat Format = new(DType.Q5_0, BlockSize, BlockBytes, Decode)
    {
        GgmlType = 6,
        Encode = Encode,
        DotType = DType.Q8_0,
        Dot = LegacyDots.DotQ5_0,
        DotReference = LegacyDots.DotQ5_0Scalar,
        DotInReferenceOrder = true,
    };

    /// <summary>The 32 values of a block as q in 0..31 (before the - 16).</summary>
    internal static void Unpack(ReadOnlySpan<byte> blk, Span<int> q)
    {
        uint qh = BinaryPrimitives.ReadUInt32LittleEndian(blk[2..]);
        for (int j = 0; j < 16; j++)
        {
            q[j] = (blk[6 + j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
            q[j + 16] = (blk[6 + j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        }
    }

    /// <summary>ggml's dequantize_row_q5_0.</summary>
    public static void Decode(ReadOnlySpan<byte> src, Span<float> dst)
    {
        Span<int> q = stackalloc int[BlockSize];
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            var blk = src.Slice(b * BlockBytes, BlockBytes);
            float d = ReadHalf(blk, 0);
            Unpack(blk, q);
            for (int j = 0; j < BlockSize; j++) dst[b * BlockSize + j] = (q[j] - 16) * d;
        }
    }

    /// <summary>ggml's quantize_row_q5_0_ref: d = (the value of largest magnitude, with its sign) / -16; q = min(31, trunc(x / d + 16.5)).</summary>
    public static void Encode(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            var x = src.Slice(b * BlockSize, BlockSize);
            var blk = dst.Slice(b * BlockBytes, BlockBytes);
            float amax = 0, max = 0;
            foreach (float v in x)
                if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
            float d = max / -16f, id = d != 0 ? 1f / d : 0f;
            WriteHalf(blk, 0, d);
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                int lo = Math.Min(31, (int)(x[j] * id + 16.5f));
                int hi = Math.Min(31, (int)(x[j + 16] * id + 16.5f));
                blk[6 + j] = (byte)((lo & 0x0F) | ((hi & 0x0F) << 4));
                qh |= (uint)((lo & 0x10) >> 4) << j;
                qh |= (uint)((hi & 0x10) >> 4) << (j + 16);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(blk[2..], qh);
        }
    }
}
