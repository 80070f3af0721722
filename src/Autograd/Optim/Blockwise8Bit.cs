namespace ManagedTensor.Optim;

/// <summary>
/// bitsandbytes' block-wise 8-bit quantization of optimizer state (Dettmers et al. 2021, "8-bit Optimizers via Block-wise
/// Quantization"): values in blocks of 2048, each block scaled by its absolute maximum to [-1, 1], each value stored as the
/// index (one byte) of the nearest entry of a 256-entry "dynamic" map. The map (bitsandbytes' create_dynamic_map) spends
/// its codes on a logarithmic range: for exponent i = 0..6, 2^i evenly spaced values (signed map; 2^(i+1) unsigned) over
/// [0.1, 1] x 10^(i-6), plus 0 and 1: the top decade of a block's range gets 64 codes (128 unsigned), each lower decade
/// half as many, down to 1e-7 of the maximum. Small values keep a code rather than rounding to zero, which a linear int8
/// code could not give the second moment (most of its values would become 0 and the step m / sqrt(v) blow up).
/// The first moment uses the signed map, the second (never negative) the unsigned one.
/// </summary>
public static class Blockwise8Bit
{
    public const int BlockSize = 2048;

    public static readonly float[] SignedMap = DynamicMap(signed: true);
    public static readonly float[] UnsignedMap = DynamicMap(signed: false);

    /// <summary>create_dynamic_map(signed, max_exponent_bits=7, total_bits=8), sorted ascending.</summary>
    private static float[] DynamicMap(bool signed)
    {
        var data = new List<double>();
        const int maxExponentBits = 7, nonSignBits = 7;
        for (int i = 0; i < maxExponentBits; i++)
        {
            int fractionItems = signed ? (1 << (i + nonSignBits - maxExponentBits)) + 1 : (1 << (i + nonSignBits - maxExponentBits + 1)) + 1;
            double scale = Math.Pow(10, -(maxExponentBits - 1) + i);
            for (int k = 0; k + 1 < fractionItems; k++)
            {
                // the midpoints of linspace(0.1, 1, fractionItems), float32 as torch computes them
                double lo = (float)(0.1 + 0.9 * k / (fractionItems - 1)), hi = (float)(0.1 + 0.9 * (k + 1) / (fractionItems - 1));
                double mean = (float)((lo + hi) / 2);
                data.Add(scale * mean);
                if (signed) data.Add(-scale * mean);
            }
        }
        data.Add(0);
        data.Add(1);
        while (data.Count < 256) data.Add(0);
        return data.Select(d => (float)d).Order().ToArray();
    }

    /// <summary>Codes (one byte per value) and a scale per block of <paramref name="values"/>.</summary>
    public static void Quantize(ReadOnlySpan<float> values, float[] map, Span<byte> codes, Span<float> absmax)
    {
        for (int b = 0, start = 0; start < values.Length; b++, start += BlockSize)
        {
            var block = values.Slice(start, Math.Min(BlockSize, values.Length - start));
            float max = 0;
            foreach (float x in block) max = Math.Max(max, Math.Abs(x));
            absmax[b] = max;
            float inv = max > 0 ? 1 / max : 0;
            for (int i = 0; i < block.Length; i++) codes[start + i] = Nearest(map, block[i] * inv);
        }
    }

    public static void Dequantize(ReadOnlySpan<byte> codes, ReadOnlySpan<float> absmax, float[] map, Span<float> values)
    {
        for (int i = 0; i < values.Length; i++) values[i] = map[codes[i]] * absmax[i / BlockSize];
    }

    /// <summary>The index of the map entry nearest <paramref name="x"/> (the map is sorted).</summary>
    private static byte Nearest(float[] map, float x)
    {
        int i = Array.BinarySearch(map, x);
        if (i >= 0) return (byte)i;
        int hi = ~i;
        if (hi == 0) return 0;
        if (hi == map.Length) return (byte)(map.Length - 1);
        return (byte)(x - map[hi - 1] <= map[hi] - x ? hi - 1 : hi);
    }
}
