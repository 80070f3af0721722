using System.Buffers.Binary;
using static ManagedTensor.Quant.QuantMath;

namespace ManagedTensor.Quant;

/// <summary>
/// Q8_K: the K-quants' activation format. Super-blocks of 256 values = f32 d, int8 q[256], int16 sums of each 16
/// consecutive q (the "bsums" that fold the K-quants' mins into one multiply); x = d * q (292 bytes). Its scale is
/// the value of largest magnitude over -127 (sign included), so that value maps to -127 exactly.
/// </summary>
public static class Q8_K
{
    public const int BlockSize = 256, BlockBytes = 4 + 256 + 32;

    public static readonly BlockFormat Format = new(DType.Q8_K, BlockSize, BlockBytes, Decode)
    {
        GgmlType = 15,
        Encode = Encode,
    };

    public static void Decode(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            var blk = src.Slice(b * BlockBytes, BlockBytes);
            float d = BinaryPrimitives.ReadSingleLittleEndian(blk);
            for (int j = 0; j < BlockSize; j++) dst[b * BlockSize + j] = d * (sbyte)blk[4 + j];
        }
    }

    /// <summary>ggml's quantize_row_q8_K_ref.</summary>
    public static void Encode(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            var x = src.Slice(b * BlockSize, BlockSize);
            var blk = dst.Slice(b * BlockBytes, BlockBytes);
            float max = 0, amax = 0;
            foreach (float v in x)
            {
                float ax = MathF.Abs(v);
                if (ax > amax) { amax = ax; max = v; }
            }
            if (amax == 0)
            {
                blk.Clear(); // d = 0, q = 0 (ggml leaves the sums as they were: zero here)
                continue;
            }
            float iscale = -127f / max;
            for (int j = 0; j < BlockSize; j++) blk[4 + j] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * x[j]));
            for (int g = 0; g < 16; g++)
            {
                int sum = 0;
                for (int i = 0; i < 16; i++) sum += (sbyte)blk[4 + 16 * g + i];
                BinaryPrimitives.WriteInt16LittleEndian(blk[(4 + 256 + 2 * g)..], (short)sum);
            }
            BinaryPrimitives.WriteSingleLittleEndian(blk, 1 / iscale);
        }
    }
}
