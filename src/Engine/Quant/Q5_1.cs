using System.Buffers.Binary;
using static ManagedTensor.Quant.QuantMath;

namespace ManagedTensor.Quant;

/// <summary>
/// Q5_1: blocks of 32 values = f16 d, f16 m, 4 bytes of fifth bits, 16 bytes of nibbles; x = q * d + m with q in
/// 0..31 (24 bytes, 6 bits per value); bits laid out as Q5_0's. The dot product takes Q8_0 activations and adds
/// m * d8 * sum(q8) for the offset (ggml pairs it with Q8_1, whose blocks carry that sum; Q8_0's is summed on the fly).
/// </summary>
public static class Q5_1
{
    public const int BlockSize = 32, BlockBytes = 2 + 2 + 4 + 16;

    public static readonly BlockFormat Format = new(DType.Q5_1, BlockSize, BlockBytes, Decode)
    {
        GgmlType = 7,
        Encode = Encode,
        DotType = DType.Q8_0,
        Dot = LegacyDots.DotQ5_1,
        DotReference = LegacyDots.DotQ5_1Scalar,
        DotInReferenceOrder = true,
    };

    /// <summary>The 32 values of a block as q in 0..31 (the qh and nibbles sit 2 bytes later than in Q5_0).</summary>
    internal static void Unpack(ReadOnlySpan<byte> blk, Span<int> q) => Q5_0.Unpack(blk[2..], q);

    /// <summary>ggml's dequantize_row_q5_1.</summary>
    public static void Decode(ReadOnlySpan<byte> src, Span<float> dst)
    {
        Span<int> q = stackalloc int[BlockSize];
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            var blk = src.Slice(b * BlockBytes, BlockBytes);
            float d = ReadHalf(blk, 0), m = ReadHalf(blk, 2);
            Unpack(blk, q);
            for (int j = 0; j < BlockSize; j++) dst[b * BlockSize + j] = q[j] * d + m;
        }
    }

    /// <summary>ggml's quantize_row_q5_1_ref: d = (max - min) / 31, m = min, q = trunc((x - min) / d + 0.5).</summary>
    public static void Encode(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            var x = src.Slice(b * BlockSize, BlockSize);
            var blk = dst.Slice(b * BlockBytes, BlockBytes);
            float min = float.MaxValue, max = -float.MaxValue;
            foreach (float v in x)
            {
                if (v < min) min = v;
                if (v > max) max = v;
            }
            float d = (max - min) / 31f, id = d != 0 ? 1f / d : 0f;
            WriteHalf(blk, 0, d);
            WriteHalf(blk, 2, min);
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                int lo = (byte)(int)((x[j] - min) * id + 0.5f);
                int hi = (byte)(int)((x[j + 16] - min) * id + 0.5f);
                blk[8 + j] = (byte)((lo & 0x0F) | ((hi & 0x0F) << 4));
                qh |= (uint)((lo & 0x10) >> 4) << j;
                qh |= (uint)((hi & 0x10) >> 4) << (j + 16);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(blk[4..], qh);
        }
    }
}
