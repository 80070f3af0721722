using System.Buffers.Binary;
using ManagedTensor.Quant;

namespace ManagedTensor.Models.Formats;

/// <summary>ggml's tensor type codes in GGUF files (the subset read or written here keeps ggml's numbering).</summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    BF16 = 30,
    TQ2_0 = 35,
}

/// <summary>
/// GGUF's type codes mapped onto the engine: F32, F16 and BF16 are plain dtypes, the rest are block formats
/// whose layouts, encoders, decoders and dot products live in the engine's table (src/Engine/Quant).
/// </summary>
public static class GgmlTypes
{
    /// <summary>The engine dtype stored under ggml type <paramref name="type"/>.</summary>
    public static DType ToDType(GgmlType type) => type switch
    {
        GgmlType.F32 => DType.F32,
        GgmlType.F16 => DType.F16,
        GgmlType.BF16 => DType.BF16,
        _ => BlockFormats.FromGgml((int)type)?.DType ?? throw new NotSupportedException($"ggml type {(uint)type} is not supported"),
    };

    /// <summary>Elements per block and bytes per block of <paramref name="type"/>.</summary>
    public static (int BlockSize, int BlockBytes) Layout(GgmlType type) => type switch
    {
        GgmlType.F32 => (1, 4),
        GgmlType.F16 => (1, 2),
        GgmlType.BF16 => (1, 2),
        _ when IsSupported((uint)type) => (BlockFormats.Get(ToDType(type)).BlockSize, BlockFormats.Get(ToDType(type)).BlockBytes),
        _ => throw new NotSupportedException($"ggml type {(uint)type} is not supported ({SupportedList})"),
    };

    public static bool IsSupported(uint code) => Enum.IsDefined(typeof(GgmlType), code);

    /// <summary>The types read here with their codes, for error messages: "F32 0, F16 1, Q4_0 2, ...".</summary>
    public static string SupportedList => string.Join(", ", Enum.GetValues<GgmlType>().Select(t => $"{t} {(uint)t}"));

    /// <summary>Bytes taken by <paramref name="count"/> elements (count must be a multiple of the block size).</summary>
    public static long ByteCount(GgmlType type, long count)
    {
        var (bs, bb) = Layout(type);
        if (count % bs != 0) throw new ArgumentException($"{type}: {count} elements is not a multiple of the block size {bs}");
        return count / bs * bb;
    }

    /// <summary>Decodes <c>dst.Length</c> elements of <paramref name="type"/> from <paramref name="src"/>.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
                break;
            case GgmlType.F16:
                System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(src)[..dst.Length], dst);
                break;
            case GgmlType.BF16:
                // bf16 is the top half of a float32.
                for (int i = 0; i < dst.Length; i++) dst[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]) << 16);
                break;
            default:
                BlockFormats.Get(ToDType(type)).Decode(src, dst);
                break;
        }
    }

    /// <summary>The types <see cref="Quantize"/> can write (what `mt quantize --type` and `mt bench --types` offer).</summary>
    public static readonly GgmlType[] Encodable = [GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0];

    /// <summary>Encodes float32 values as <paramref name="type"/>, one of <see cref="Encodable"/>.</summary>
    public static byte[] Quantize(GgmlType type, ReadOnlySpan<float> src)
    {
        var dst = new byte[ByteCount(type, src.Length)];
        switch (type)
        {
            case GgmlType.F32: for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(dst.AsSpan(4 * i), src[i]); break;
            case GgmlType.F16: for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(dst.AsSpan(2 * i), (Half)src[i]); break;
            case GgmlType.BF16: for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(dst.AsSpan(2 * i), BFloat16.FromFloat(src[i]).Bits); break;
            default:
                var f = BlockFormats.Get(ToDType(type));
                var encode = f.Encode ?? throw new NotSupportedException($"quantizing to {type} is not supported (it can be read, not written)");
                // Blocks encode independently: threads take runs of 256 blocks (the K-quants' scale searches make a
                // 1.1B model's Q4_K a minute's work on one core); the bytes are the same as one pass.
                int blocks = src.Length / f.BlockSize;
                if (blocks < 512) encode(src, dst);
                else
                {
                    var from = src.ToArray();
                    Parallel.For(0, (blocks + 255) / 256, c =>
                    {
                        int b0 = c * 256, n = Math.Min(256, blocks - b0);
                        encode(from.AsSpan(b0 * f.BlockSize, n * f.BlockSize), dst.AsSpan(b0 * f.BlockBytes, n * f.BlockBytes));
                    });
                }
                break;
        }
        return dst;
    }
}
