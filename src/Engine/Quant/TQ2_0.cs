using static ManagedTensor.Quant.QuantMath;

namespace ManagedTensor.Quant;

/// <summary>
/// TQ2_0, the ternary format for BitNet b1.58 weights (values in {-1, 0, +1} times a scale): super-blocks of 256 values
/// = 64 bytes of 2-bit codes (q + 1 in 0..2), then f16 d; x = (q - 1) * d (66 bytes, 2.0625 bits per value).
/// In each half of 128 values (bytes 32h..32h + 31), byte m holds values 128h + m + 32n in bits 2n..2n + 1 (n = 0..3),
/// so decoding is a shift and a mask per group of 32: the same shape as Q4's nibbles, one more shift.
/// Why this packing over a denser one: llama.cpp's TQ2_0 is what BitNet GGUF files hold (the bytes here are ggml's,
/// so files move both ways), its codes decode with shift-and-mask and multiply against Q8_K activations with the same
/// integer dot product as the K-quants, where base-3 packing (TQ1_0, 1.69 bits) needs a multiply-and-carry per
/// value; the 0.37 bits saved are not worth a slower kernel for weights that are already 8x smaller than f16.
/// Scale: ggml's encoder takes d = max |x| per block, which is exact for weights already ternarized (BitNet's
/// absmean quantizer produces {-1, 0, 1} * scale); arbitrary floats are rounded to the nearest of -d, 0, d.
/// </summary>
public static class TQ2_0
{
    public const int BlockSize = 256, BlockBytes = 64 + 2;

    public static readonly BlockFormat Format = new(DType.TQ2_0, BlockSize, BlockBytes, Decode)
    {
        GgmlType = 35,
        Encode = Encode,
        DotType = DType.Q8_K,
        Dot = KQuantDots.DotTQ2_0,
        DotReference = KQuantDots.DotTQ2_0Scalar,
        DotInReferenceOrder = true,
    };

    /// <summary>ggml's dequantize_row_tq2_0.</summary>
    public static void Decode(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            var blk = src.Slice(b * BlockBytes, BlockBytes);
            float d = ReadHalf(blk, 64);
            var y = dst.Slice(b * BlockSize, BlockSize);
            for (int h = 0; h < 2; h++)
                for (int n = 0; n < 4; n++)
                    for (int m = 0; m < 32; m++)
                        y[128 * h + 32 * n + m] = (float)(((blk[32 * h + m] >> (2 * n)) & 3) - 1) * d;
        }
    }

    /// <summary>ggml's quantize_row_tq2_0_ref: d = max |x|, q = round(x / d) (half away from zero) + 1.</summary>
    public static void Encode(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            var x = src.Slice(b * BlockSize, BlockSize);
            var blk = dst.Slice(b * BlockBytes, BlockBytes);
            float amax = 0;
            foreach (float v in x) amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax, id = d != 0 ? 1f / d : 0f;
            WriteHalf(blk, 64, d);
            for (int h = 0; h < 2; h++)
                for (int m = 0; m < 32; m++)
                {
                    int q = 0;
                    for (int n = 0; n < 4; n++)
                    {
                        int xi = (int)MathF.Round(x[128 * h + m + 32 * n] * id, MidpointRounding.AwayFromZero) + 1;
                        q += (xi & 3) << (2 * n);
                    }
                    blk[32 * h + m] = (byte)q;
                }
        }
    }
}
