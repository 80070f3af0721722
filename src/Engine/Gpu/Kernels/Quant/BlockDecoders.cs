using ILGPU;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu.Kernels.Quant;

// The block formats as the GPU kernels read them: one decoder struct per format, the device twin of its
// CPU traits in src/Engine/Quant (same bytes, same float operations, so a decoded value is bit for bit the
// CPU's). Kernels are generic over the decoder and ask it for eight consecutive values of a block at a time:
// the unit of a GEMV lane's step, of a GEMM tile's 16-byte shared-memory chunk and of the decode kernel.
//
// Weights are read as 16-bit words: every ggml block has an even size and every field an even offset (Q8_0
// 34 bytes, Q4_0 18, Q4_K 144), so a block of any row starts on a 2-byte boundary.

/// <summary>
/// Eight consecutive values of a block before scaling: value i = <see cref="Scale"/> * raw_i - <see cref="Min"/>,
/// raw 0..3 in <see cref="Lo"/>, 4..7 in <see cref="Hi"/>. Keeping the scale apart lets a dot product apply it
/// once per eight values: sum_i v_i x_i = Scale * sum_i raw_i x_i - Min * sum_i x_i.
/// </summary>
internal struct Group8
{
    public Float4 Lo, Hi;
    public float Scale, Min;

    /// <summary>Value i of the group, decoded as the CPU decodes it (Scale * raw - Min, two roundings).</summary>
    public readonly float Value(int i)
    {
        float raw = i switch { 0 => Lo.X, 1 => Lo.Y, 2 => Lo.Z, 3 => Lo.W, 4 => Hi.X, 5 => Hi.Y, 6 => Hi.Z, _ => Hi.W };
        return Scale * raw - Min;
    }
}

/// <summary>A block format on the device: its geometry and the decoding of eight values.</summary>
internal interface IBlockDecoder
{
    /// <summary>Values per block (32, or 256 for the K-quants).</summary>
    int BlockSize { get; }

    /// <summary>Bytes per block (always even).</summary>
    int BlockBytes { get; }

    /// <summary>Values 8 j .. 8 j + 7 of the block whose first 16-bit word is <paramref name="w"/>[<paramref name="at"/>].</summary>
    Group8 Decode8(ArrayView<ushort> w, int at, int j);
}

/// <summary>Something made per decoder type (a kernel's MethodInfo): <see cref="BlockDecoders.Visit"/> calls it with the format's struct.</summary>
internal interface IDecoderVisitor<TResult>
{
    TResult Visit<TW>() where TW : struct, IBlockDecoder;
}

/// <summary>The formats with a device decoder, and the one switch from a format to its decoder struct.</summary>
internal static class BlockDecoders
{
    public static readonly DType[] Formats = [DType.Q8_0, DType.Q4_0, DType.Q4_K];

    public static bool Has(DType format) => Array.IndexOf(Formats, format) >= 0;

    public static TResult Visit<TResult, TVisitor>(DType format, TVisitor visitor) where TVisitor : IDecoderVisitor<TResult> => format switch
    {
        DType.Q8_0 => visitor.Visit<Q8_0Blocks>(),
        DType.Q4_0 => visitor.Visit<Q4_0Blocks>(),
        DType.Q4_K => visitor.Visit<Q4_KBlocks>(),
        _ => throw new NotSupportedException($"no device decoder for {format}"),
    };
}

/// <summary>Bit tricks shared by the decoders.</summary>
internal static class BlockBits
{
    /// <summary>An f16 scale as a float: one cvt on CUDA, integer code on the CPU accelerator (both exact).</summary>
    public static float Half(ushort h) => CudaAsm.IsSupported ? Ptx.F16ToF32(h) : HalfBits.ToFloat(h);

    /// <summary>
    /// q - bias for a small integer 0 &lt;= q &lt; 2^23, without an integer-to-float conversion (a quarter- or
    /// eighth-rate instruction on NVIDIA SMs): the float with bits 0x4B000000 | q is 2^23 + q exactly, and
    /// subtracting 2^23 + bias is exact (Sterbenz). One OR and one FADD per value.
    /// </summary>
    public static float Small(uint q, float bias) => Interop.IntAsFloat(0x4B000000u | q) - (8388608f + bias);

    /// <summary>Four bytes at 16-bit word <paramref name="at"/>, little-endian.</summary>
    public static uint Bytes4(ArrayView<ushort> w, int at) => w[at] | ((uint)w[at + 1] << 16);

    /// <summary>Byte <paramref name="i"/> counted from 16-bit word <paramref name="at"/>.</summary>
    public static uint Byte(ArrayView<ushort> w, int at, int i) => ((uint)w[at + (i >> 1)] >> ((i & 1) * 8)) & 0xFF;

    /// <summary>The low nibbles of the four bytes of <paramref name="u"/>, minus <paramref name="bias"/>.</summary>
    public static Float4 Nibbles(uint u, float bias) =>
        new(Small(u & 0xF, bias), Small((u >> 8) & 0xF, bias), Small((u >> 16) & 0xF, bias), Small((u >> 24) & 0xF, bias));

    /// <summary>The four bytes of <paramref name="u"/> as signed integers (flipping the sign bit makes them q + 128).</summary>
    public static Float4 SignedBytes(uint u)
    {
        uint x = u ^ 0x80808080u;
        return new(Small(x & 0xFF, 128f), Small((x >> 8) & 0xFF, 128f), Small((x >> 16) & 0xFF, 128f), Small(x >> 24, 128f));
    }
}

/// <summary>Q8_0: f16 d, int8 q[32]; x = q d. Values 8 j.. are bytes 2 + 8 j.. (words 1 + 4 j..).</summary>
internal readonly struct Q8_0Blocks : IBlockDecoder
{
    public int BlockSize => 32;
    public int BlockBytes => 34;

    public Group8 Decode8(ArrayView<ushort> w, int at, int j) => new()
    {
        Lo = BlockBits.SignedBytes(BlockBits.Bytes4(w, at + 1 + 4 * j)),
        Hi = BlockBits.SignedBytes(BlockBits.Bytes4(w, at + 3 + 4 * j)),
        Scale = BlockBits.Half(w[at]),
    };
}

/// <summary>
/// Q4_0: f16 d, 16 bytes of nibbles; x = (q - 8) d. Byte i holds value i (low nibble) and value i + 16 (high),
/// so values 8 j.. are the low (j &lt; 2) or high (j &gt;= 2) nibbles of bytes 8 (j % 2)..
/// </summary>
internal readonly struct Q4_0Blocks : IBlockDecoder
{
    public int BlockSize => 32;
    public int BlockBytes => 18;

    public Group8 Decode8(ArrayView<ushort> w, int at, int j)
    {
        int word = at + 1 + 4 * (j & 1), shift = (j >> 1) * 4;
        return new()
        {
            Lo = BlockBits.Nibbles(BlockBits.Bytes4(w, word) >> shift, 8f),
            Hi = BlockBits.Nibbles(BlockBits.Bytes4(w, word + 2) >> shift, 8f),
            Scale = BlockBits.Half(w[at]),
        };
    }
}

/// <summary>
/// Q4_K: super-blocks of 256 = f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) pairs for 8 sub-blocks of 32, 128
/// bytes of nibbles; x = d sc_s q - dmin m_s. Sub-blocks 2c and 2c + 1 share the 32 bytes 16 + 32 c..: low
/// nibbles are sub-block 2c, high nibbles 2c + 1. Values 8 j.. lie in sub-block s = j / 4, bytes 16 + 32 (s / 2) + 8 (j % 4)..
/// </summary>
internal readonly struct Q4_KBlocks : IBlockDecoder
{
    public int BlockSize => 256;
    public int BlockBytes => 144;

    public Group8 Decode8(ArrayView<ushort> w, int at, int j)
    {
        int s = j >> 2, word = at + 8 + 16 * (s >> 1) + 4 * (j & 3), shift = (s & 1) * 4;
        // ggml's get_scale_min_k4 over the 12 scale bytes (words 2..7): sub-blocks 0-3 keep 6 bits in bytes s and s + 4;
        // 4-7 keep 4 bits in byte s + 4 and their top 2 bits in the spare top bits of bytes s - 4 and s.
        uint sc, m;
        if (s < 4)
        {
            sc = BlockBits.Byte(w, at + 2, s) & 63;
            m = BlockBits.Byte(w, at + 2, s + 4) & 63;
        }
        else
        {
            uint b4 = BlockBits.Byte(w, at + 2, s + 4);
            sc = (b4 & 0xF) | ((BlockBits.Byte(w, at + 2, s - 4) >> 6) << 4);
            m = (b4 >> 4) | ((BlockBits.Byte(w, at + 2, s) >> 6) << 4);
        }
        return new()
        {
            Lo = BlockBits.Nibbles(BlockBits.Bytes4(w, word) >> shift, 0f),
            Hi = BlockBits.Nibbles(BlockBits.Bytes4(w, word + 2) >> shift, 0f),
            Scale = BlockBits.Half(w[at]) * (int)sc,
            Min = BlockBits.Half(w[at + 1]) * (int)m,
        };
    }
}
