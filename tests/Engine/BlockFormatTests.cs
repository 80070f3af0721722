using System.Runtime.InteropServices;
using System.Text.Json;
using ManagedTensor.Quant;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>
/// Every block format against tests/fixtures/quant (bytes and values written by the independent numpy reference,
/// itself checked bit for bit against ggml's quantizer by make_quant_fixtures.py --check-ggml), and every SIMD dot
/// product against its plain loop.
/// </summary>
public class BlockFormatTests
{
    private static readonly Lazy<JsonElement> Manifest = new(() =>
        JsonDocument.Parse(File.ReadAllText(RepoPaths.Of("tests", "fixtures", "quant", "manifest.json"))).RootElement);

    public static TheoryData<string> FixtureFormats() => new(Manifest.Value.GetProperty("formats").EnumerateObject().Select(p => p.Name));

    private static (float[] Source, byte[] Encoded, float[] Decoded) Fixture(string name)
    {
        var bytes = File.ReadAllBytes(RepoPaths.Of("tests", "fixtures", "quant", name + ".bin"));
        var m = Manifest.Value.GetProperty("formats").GetProperty(name);
        byte[] Part(string key)
        {
            var r = m.GetProperty(key);
            return bytes.AsSpan(r[0].GetInt32(), r[1].GetInt32()).ToArray();
        }
        return (MemoryMarshal.Cast<byte, float>(Part("source")).ToArray(), Part("encoded"), MemoryMarshal.Cast<byte, float>(Part("decoded")).ToArray());
    }

    [Theory, MemberData(nameof(FixtureFormats))]
    public void EncodesAndDecodesAsTheReferenceBitForBit(string name)
    {
        var f = BlockFormats.Get(Enum.Parse<DType>(name));
        var m = Manifest.Value.GetProperty("formats").GetProperty(name);
        Assert.Equal(m.GetProperty("block").GetInt32(), f.BlockSize);
        Assert.Equal(m.GetProperty("block_bytes").GetInt32(), f.BlockBytes);
        Assert.Equal(m.GetProperty("ggml_type").ValueKind == JsonValueKind.Null ? null : m.GetProperty("ggml_type").GetInt32(), f.GgmlType);
        var (source, encoded, decoded) = Fixture(name);

        var bytes = new byte[encoded.Length];
        f.Encode!(source, bytes);
        for (int b = 0; b < encoded.Length / f.BlockBytes; b++) // name the first block that differs
            Assert.True(encoded.AsSpan(b * f.BlockBytes, f.BlockBytes).SequenceEqual(bytes.AsSpan(b * f.BlockBytes, f.BlockBytes)),
                $"{name} block {b}: [{string.Join(",", bytes.Skip(b * f.BlockBytes).Take(f.BlockBytes))}], reference [{string.Join(",", encoded.Skip(b * f.BlockBytes).Take(f.BlockBytes))}]");

        var values = new float[decoded.Length];
        f.Decode(encoded, values);
        for (int i = 0; i < values.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(decoded[i]) == BitConverter.SingleToInt32Bits(values[i]) || decoded[i] == values[i],
                $"{name} value {i}: {values[i]}, reference {decoded[i]}");
    }

    [Theory, MemberData(nameof(FixtureFormats))]
    public void TensorCastsRunTheFormat(string name)
    {
        var dtype = Enum.Parse<DType>(name);
        var (source, encoded, decoded) = Fixture(name);
        int rows = Manifest.Value.GetProperty("rows").GetInt32(), cols = Manifest.Value.GetProperty("cols").GetInt32();
        var q = Tensor.FromArray(source, [rows, cols]).To(dtype);
        Assert.Equal(encoded, q.ToBlockBytes());
        Assert.Equal(decoded, Tensor.FromBlocks(encoded, [rows, cols], dtype).To(DType.F32).ToArray<float>());
    }

    public static TheoryData<DType> DotFormats() => new(BlockFormats.All.Where(f => f.Dot is not null).Select(f => f.DType));

    /// <summary>Random weights and activations over 1 to 9 blocks: the SIMD dot equals the plain loop.</summary>
    [Theory, MemberData(nameof(DotFormats))]
    public void SimdDotEqualsThePlainLoop(DType dtype)
    {
        var f = BlockFormats.Get(dtype);
        var rng = new Random(7 + (int)dtype);
        foreach (int blocks in new[] { 1, 2, 3, 9 })
        {
            int n = blocks * f.BlockSize;
            var w = new float[n];
            var x = new float[n];
            for (int i = 0; i < n; i++) { w[i] = (rng.NextSingle() - 0.45f) * 0.1f; x[i] = (rng.NextSingle() - 0.5f) * 4; }
            var wq = new byte[f.ByteCount(n)];
            f.Encode!(w, wq);
            byte[] xq;
            if (f.DotType == DType.F32) xq = MemoryMarshal.AsBytes(x.AsSpan()).ToArray();
            else
            {
                var xf = BlockFormats.Get(f.DotType!.Value);
                xq = new byte[xf.ByteCount(n)];
                xf.Encode!(x, xq);
            }
            float fast = f.Dot!(wq, xq, blocks), plain = f.DotReference!(wq, xq, blocks);
            if (f.DotInReferenceOrder) Assert.Equal(plain, fast);
            else // float lanes sum in another order: equal to float32 rounding of the block terms
                Assert.True(Math.Abs(fast - plain) <= 1e-5 * (1 + Math.Abs(plain)), $"{dtype} {blocks} blocks: {fast} vs {plain}");
            // And both are the dot product of the decoded values, up to the activations' 8-bit rounding.
            var wd = new float[n];
            f.Decode(wq, wd);
            double exact = 0, scale = 0;
            for (int i = 0; i < n; i++) { exact += (double)wd[i] * x[i]; scale += Math.Abs((double)wd[i] * x[i]); }
            Assert.True(Math.Abs(plain - exact) <= 0.02 * scale + 1e-6, $"{dtype} {blocks} blocks: {plain} vs decoded {exact} (sum |w x| {scale})");
        }
    }

    [Fact]
    public void TheInlineHalfConversionEqualsTheRuntimesForEveryValue()
    {
        for (int h = 0; h < 65536; h++)
        {
            float want = (float)BitConverter.UInt16BitsToHalf((ushort)h), got = QuantMath.HalfToFloat((ushort)h);
            Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(got) || (float.IsNaN(want) && float.IsNaN(got)),
                $"0x{h:X4}: {got}, runtime {want}");
        }
    }
}
