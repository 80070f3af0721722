using ManagedTensor.Gpu.Kernels;
using Xunit;

namespace ManagedTensor.Tests.Gpu;

/// <summary>
/// The GPU kernels' one half-precision conversion (HalfFormats.cs) is bit for bit the CPU backend's:
/// System.Half for fp16 and BFloat16 for bf16, NaN payloads included (a NaN's bits survive a round trip
/// through a kernel exactly as through the CPU backend).
/// </summary>
public class HalfFormatTests
{
    [Fact]
    public void HalfToFloatMatchesSystemHalfForEveryBitPattern()
    {
        for (int h = 0; h < 65536; h++)
        {
            uint expected = BitConverter.SingleToUInt32Bits((float)BitConverter.UInt16BitsToHalf((ushort)h));
            uint actual = BitConverter.SingleToUInt32Bits(HalfBits.ToFloat((ushort)h));
            Assert.True(expected == actual, $"{h:X4}: {actual:X8}, expected {expected:X8}");
        }
    }

    [Fact]
    public void FloatToHalfMatchesSystemHalfIncludingTiesSubnormalsOverflowAndNaNPayloads()
    {
        var rng = new Random(2);
        for (int i = 0; i < 300000; i++)
        {
            // Exponents across normal, subnormal, tiny and overflowing halves, exact ties, and NaNs with payloads.
            float f = (i % 4) switch
            {
                0 => BitConverter.UInt32BitsToSingle((uint)rng.Next() | (uint)(rng.Next(2) << 31)),
                1 => BitConverter.UInt32BitsToSingle(0x7F800000u | (uint)rng.Next(1, 0x800000) | (uint)(rng.Next(2) << 31)),
                _ => (float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-27, 18))),
            };
            if (i % 7 == 0) f = (float)BitConverter.UInt16BitsToHalf((ushort)rng.Next(65536)); // exact halves
            ushort expected = BitConverter.HalfToUInt16Bits((Half)f);
            ushort actual = HalfBits.FromFloat(f);
            Assert.True(expected == actual, $"{BitConverter.SingleToUInt32Bits(f):X8}: {actual:X4}, expected {expected:X4}");
        }
    }

    [Fact]
    public void Bfloat16MatchesTheCpuType()
    {
        var rng = new Random(3);
        for (int i = 0; i < 200000; i++)
        {
            float f = BitConverter.UInt32BitsToSingle((uint)rng.Next() | (uint)(rng.Next(2) << 31));
            Assert.Equal(BFloat16.FromFloat(f).Bits, BFloat16Bits.FromFloat(f));
            ushort b = (ushort)rng.Next(65536);
            Assert.Equal(BitConverter.SingleToUInt32Bits(new BFloat16(b).ToFloat()), BitConverter.SingleToUInt32Bits(BFloat16Bits.ToFloat(b)));
        }
    }
}
