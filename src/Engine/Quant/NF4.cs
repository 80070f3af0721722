using System.Buffers.Binary;

namespace ManagedTensor.Quant;

/// <summary>
/// NF4, QLoRA's 4-bit NormalFloat (bitsandbytes): blocks of 64 values = f32 absmax, then 32 bytes of 4-bit codes
/// into a 16-value table of standard-normal quantiles scaled to [-1, 1]; x = Code[q] * absmax (36 bytes, 4.5 bits
/// per value). As in bitsandbytes, the first value of each pair sits in the high nibble. The codes, the table and the
/// absmax are bitsandbytes' bit for bit; keeping absmax inside each block (bitsandbytes stores the absmax vector
/// beside the packed codes) makes the format self-contained, as every block format here is.
///
/// Double quantization (QLoRA's 8-bit absmax, blocks of 256 absmax with a per-tensor mean subtracted) is not a
/// second dtype: its second-level block spans 256 x 64 = 16384 values, longer than most rows, and its per-tensor
/// offset is state outside any block, so it cannot be a block format whose rows stand alone; it saves 0.37 of 4.5
/// bits per value. A checkpoint that double-quantizes decodes its absmax to f32 once at load time (see
/// <see cref="ExpandNestedAbsmax"/>) and becomes plain NF4.
/// </summary>
public static class NF4
{
    public const int BlockSize = 64, BlockBytes = 4 + 32;

    /// <summary>bitsandbytes' NF4 table (create_normal_map(0.9677083) rounded to f32, as in its kernels).</summary>
    public static ReadOnlySpan<float> Code =>
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    ];

    /// <summary>
    /// bitsandbytes' dQuantizeNF4 decision thresholds (midpoints of adjacent table values, from its kernels): code i
    /// is the number of thresholds x lies strictly above.
    /// </summary>
    private static ReadOnlySpan<float> Thresholds =>
    [
        -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
        -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
        0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
        0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f,
    ];

    public static readonly BlockFormat Format = new(DType.NF4, BlockSize, BlockBytes, Decode)
    {
        Encode = Encode,
        DotType = DType.F32,
        Dot = Nf4Dot.Dot,
        DotReference = Nf4Dot.DotScalar,
    };

    /// <summary>The code of a value already divided by its block's absmax (a NaN, from an all-zero block, gives 0).</summary>
    public static int Quantize(float x)
    {
        int q = 0;
        foreach (float t in Thresholds) q += x > t ? 1 : 0;
        return q;
    }

    public static void Decode(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var code = Code;
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            var blk = src.Slice(b * BlockBytes, BlockBytes);
            float absmax = BinaryPrimitives.ReadSingleLittleEndian(blk);
            var y = dst.Slice(b * BlockSize, BlockSize);
            for (int j = 0; j < 32; j++)
            {
                y[2 * j] = code[blk[4 + j] >> 4] * absmax;
                y[2 * j + 1] = code[blk[4 + j] & 0x0F] * absmax;
            }
        }
    }

    /// <summary>bitsandbytes' kQuantizeBlockwise for NF4: absmax = max |x|, code of x * (1 / absmax), pairs high nibble first.</summary>
    public static void Encode(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            var x = src.Slice(b * BlockSize, BlockSize);
            var blk = dst.Slice(b * BlockBytes, BlockBytes);
            float absmax = 0;
            foreach (float v in x) absmax = MathF.Max(absmax, MathF.Abs(v));
            float inv = 1f / absmax;
            BinaryPrimitives.WriteSingleLittleEndian(blk, absmax);
            for (int j = 0; j < 32; j++) blk[4 + j] = (byte)((Quantize(x[2 * j] * inv) << 4) | Quantize(x[2 * j + 1] * inv));
        }
    }

    /// <summary>
    /// QLoRA's double-quantized absmax back to f32: absmax[i] = table[codes[i]] * absmax2[i / blockSize2] + offset,
    /// with bitsandbytes' 8-bit dynamic <paramref name="table"/> (256 values), its second-level scales and the
    /// per-tensor offset (the mean subtracted before quantizing), as its dequantize_blockwise computes them.
    /// </summary>
    public static float[] ExpandNestedAbsmax(ReadOnlySpan<byte> codes, ReadOnlySpan<float> absmax2, ReadOnlySpan<float> table, float offset, int blockSize2 = 256)
    {
        if (table.Length != 256) throw new ArgumentException($"NF4 nested absmax: the 8-bit table has {table.Length} values, expected 256");
        long need = ((long)codes.Length + blockSize2 - 1) / blockSize2;
        if (absmax2.Length != need)
            throw new ArgumentException($"NF4 nested absmax: {codes.Length} codes in blocks of {blockSize2} need {need} second-level scales, got {absmax2.Length}");
        var absmax = new float[codes.Length];
        for (int i = 0; i < codes.Length; i++) absmax[i] = table[codes[i]] * absmax2[i / blockSize2] + offset;
        return absmax;
    }
}
