using ILGPU;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu.Kernels.Quant;

// The block formats as the GPU kernels read them: one decoder struct per format, the device twin of its
// CPU traits in src/Engine/Quant (same bytes, same float operations, so a decoded value is bit for bit the
// CPU's). Kernels are generic over the decoder and ask it for eight consecutive values of a block at a time:
// the unit of a GEMV lane's step, of a GEMM tile's 16-byte shared-memory chunk and of the decode kernel.
//
// Weights are read as 16-bit words: every block format has an even size and every field an even offset (Q8_0
// 34 bytes, Q4_0 18, Q5_0 22, Q5_1 24, Q4_K 144, Q5_K 176, Q6_K 210, NF4 36, TQ2_0 66), so a block of any row starts
// on a 2-byte boundary. A 32-bit field at an offset of 2 mod 4 (Q5_0's qh) is built from two words (Bytes4).

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
    public static readonly DType[] Formats = [DType.Q8_0, DType.Q4_0, DType.Q5_0, DType.Q5_1, DType.Q4_K, DType.Q5_K, DType.Q6_K, DType.NF4, DType.TQ2_0];

    public static bool Has(DType format) => Array.IndexOf(Formats, format) >= 0;

    public static TResult Visit<TResult, TVisitor>(DType format, TVisitor visitor) where TVisitor : IDecoderVisitor<TResult> => format switch
    {
        DType.Q8_0 => visitor.Visit<Q8_0Blocks>(),
        DType.Q4_0 => visitor.Visit<Q4_0Blocks>(),
        DType.Q5_0 => visitor.Visit<Q5_0Blocks>(),
        DType.Q5_1 => visitor.Visit<Q5_1Blocks>(),
        DType.Q4_K => visitor.Visit<Q4_KBlocks>(),
        DType.Q5_K => visitor.Visit<Q5_KBlocks>(),
        DType.Q6_K => visitor.Visit<Q6_KBlocks>(),
        DType.NF4 => visitor.Visit<Nf4Blocks>(),
        DType.TQ2_0 => visitor.Visit<TQ2_0Blocks>(),
        _ => throw new NotSupportedException($"no device decoder for {format}"),
    };
}

/// <summary>A K-quant sub-block's 6-bit scale and min (<see cref="BlockBits.ScaleMinK4"/>).</summary>
internal struct ScaleMin
{
    public uint Scale, Min;
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

    /// <summary>
    /// Bits 0-3 of <paramref name="h"/> moved to bit 4 of bytes 0-3 (the fifth bit of four 5-bit values whose nibbles
    /// are bytes' bits 0-3). The multiply adds copies of h shifted by 0, 7, 14 and 21, which do not overlap (no carries),
    /// so bit i of h lands on bit 8 i; the mask keeps those four bits.
    /// </summary>
    public static uint FifthBits(uint h) => ((h * 0x00204081u) & 0x01010101u) << 4;

    /// <summary>
    /// ggml's get_scale_min_k4 (Q4_K and Q5_K) over the 12 scale bytes starting at 16-bit word <paramref name="at"/>: the
    /// 6-bit scale and min of sub-block <paramref name="s"/>. Sub-blocks 0-3 keep 6 bits in bytes s and s + 4; 4-7 keep
    /// 4 bits in byte s + 4 and their top 2 bits in the spare top bits of bytes s - 4 and s. (A struct, not the two
    /// packed in one uint: packing and unpacking cost the Q4_K GEMV 0.1 instructions per value.)
    /// </summary>
    public static ScaleMin ScaleMinK4(ArrayView<ushort> w, int at, int s)
    {
        uint sc, m;
        if (s < 4)
        {
            sc = Byte(w, at, s) & 63;
            m = Byte(w, at, s + 4) & 63;
        }
        else
        {
            uint b4 = Byte(w, at, s + 4);
            sc = (b4 & 0xF) | ((Byte(w, at, s - 4) >> 6) << 4);
            m = (b4 >> 4) | ((Byte(w, at, s) >> 6) << 4);
        }
        return new() { Scale = sc, Min = m };
    }

    /// <summary>The four bytes of <paramref name="u"/> (each below 2^8), minus <paramref name="bias"/>.</summary>
    public static Float4 Bytes(uint u, float bias) =>
        new(Small(u & 0xFF, bias), Small((u >> 8) & 0xFF, bias), Small((u >> 16) & 0xFF, bias), Small(u >> 24, bias));

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
/// Q5_0: f16 d, 4 bytes of fifth bits qh (bytes 2..5: words 1, 2, a 32-bit field on a 2-byte boundary), 16 bytes of
/// nibbles (words 3..10); x = (q - 16) d with q in 0..31 (see src/Engine/Quant/Q5_0.cs). Byte i holds the low 4 bits of
/// value i (low nibble) and value i + 16 (high), and bit v of qh is value v's fifth bit. So values 8 j.. are Q4_0's
/// nibbles (low for j &lt; 2, of bytes 8 (j % 2)..) with their fifth bits in qh byte j, moved to bit 4 of each byte.
/// </summary>
internal readonly struct Q5_0Blocks : IBlockDecoder
{
    public int BlockSize => 32;
    public int BlockBytes => 22;

    public Group8 Decode8(ArrayView<ushort> w, int at, int j) => Q5Legacy.Decode8(w, at, at + 1, at + 3, j, 16f, BlockBits.Half(w[at]), 0f);
}

/// <summary>
/// Q5_1: f16 d, f16 m, 4 bytes of fifth bits (words 2, 3), 16 bytes of nibbles (words 4..11), laid out as Q5_0's;
/// x = q d + m with q in 0..31 (see src/Engine/Quant/Q5_1.cs). In <see cref="Group8"/>'s form raw = q, Scale = d and
/// Min = -m: q d - (-m) is q d + m exactly (IEEE subtraction adds the negation), the CPU's operations in its order.
/// </summary>
internal readonly struct Q5_1Blocks : IBlockDecoder
{
    public int BlockSize => 32;
    public int BlockBytes => 24;

    public Group8 Decode8(ArrayView<ushort> w, int at, int j) => Q5Legacy.Decode8(w, at, at + 2, at + 4, j, 0f, BlockBits.Half(w[at]), -BlockBits.Half(w[at + 1]));
}

/// <summary>The bits shared by Q5_0 and Q5_1: the 32-bit qh at word <c>qh</c>, the 16 nibble bytes at word <c>qs</c>.</summary>
internal static class Q5Legacy
{
    public static Group8 Decode8(ArrayView<ushort> w, int at, int qh, int qs, int j, float bias, float scale, float min)
    {
        int word = qs + 4 * (j & 1), shift = (j >> 1) * 4;
        uint high = BlockBits.Byte(w, qh, j); // bits 8 j .. 8 j + 7 of qh: values 8 j ..
        return new()
        {
            Lo = BlockBits.Bytes(((BlockBits.Bytes4(w, word) >> shift) & 0x0F0F0F0Fu) | BlockBits.FifthBits(high & 0xF), bias),
            Hi = BlockBits.Bytes(((BlockBits.Bytes4(w, word + 2) >> shift) & 0x0F0F0F0Fu) | BlockBits.FifthBits(high >> 4), bias),
            Scale = scale,
            Min = min,
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
        var sm = BlockBits.ScaleMinK4(w, at + 2, s); // the 12 scale bytes are words 2..7
        return new()
        {
            Lo = BlockBits.Nibbles(BlockBits.Bytes4(w, word) >> shift, 0f),
            Hi = BlockBits.Nibbles(BlockBits.Bytes4(w, word + 2) >> shift, 0f),
            Scale = BlockBits.Half(w[at]) * (int)sm.Scale,
            Min = BlockBits.Half(w[at + 1]) * (int)sm.Min,
        };
    }
}

/// <summary>
/// Q5_K: super-blocks of 256 = f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) pairs as Q4_K's (words 2..7), 32 bytes of
/// fifth bits qh (words 8..23), 128 bytes of nibbles qs (words 24..87); x = d sc_s q - dmin m_s with q in 0..31 (see
/// src/Engine/Quant/Q5_K.cs). Sub-blocks 2c and 2c + 1 share qs bytes 32 c..: low nibbles are sub-block 2c, high nibbles
/// 2c + 1, and value l of sub-block s has its fifth bit in bit s of qh byte l. Values 8 j.. lie in sub-block s = j / 4:
/// nibbles of qs bytes 32 (s / 2) + 8 (j % 4).., bit s of qh bytes 8 (j % 4)..
/// </summary>
internal readonly struct Q5_KBlocks : IBlockDecoder
{
    public int BlockSize => 256;
    public int BlockBytes => 176;

    public Group8 Decode8(ArrayView<ushort> w, int at, int j)
    {
        int s = j >> 2, word = at + 24 + 16 * (s >> 1) + 4 * (j & 3), qh = at + 8 + 4 * (j & 3), shift = (s & 1) * 4;
        var sm = BlockBits.ScaleMinK4(w, at + 2, s);
        // Five-bit q per byte: the nibble in bits 0-3, bit s of the qh byte moved to bit 4.
        uint lo = ((BlockBits.Bytes4(w, word) >> shift) & 0x0F0F0F0Fu) | (((BlockBits.Bytes4(w, qh) >> s) & 0x01010101u) << 4);
        uint hi = ((BlockBits.Bytes4(w, word + 2) >> shift) & 0x0F0F0F0Fu) | (((BlockBits.Bytes4(w, qh + 2) >> s) & 0x01010101u) << 4);
        return new()
        {
            Lo = BlockBits.Bytes(lo, 0f),
            Hi = BlockBits.Bytes(hi, 0f),
            Scale = BlockBits.Half(w[at]) * (int)sm.Scale, // the CPU's d * sc, then * q
            Min = BlockBits.Half(w[at + 1]) * (int)sm.Min,
        };
    }
}

/// <summary>
/// Q6_K: super-blocks of 256 = 128 bytes of low nibbles (ql), 64 bytes of 2-bit high parts (qh), 16 int8 scales, f16 d
/// at byte 208; x = d sc (q - 32) with q in 0..63 (see src/Engine/Quant/Q6_K.cs). Each half h of 128 values has
/// quadrants of 32: quadrant t takes the low (t &lt; 2) or high nibbles of ql bytes 64 h + 32 (t % 2) + l and bits 2 t, 2 t + 1
/// of qh byte 128 + 32 h + l, l = 0..31; its 16-value runs use scales 8 h + 2 t + l / 16. Values 8 j.. are one
/// quadrant's l = 8 (j % 4)..: a group needs 4 bytes of ql, 4 of qh and one scale.
/// </summary>
internal readonly struct Q6_KBlocks : IBlockDecoder
{
    public int BlockSize => 256;
    public int BlockBytes => 210;

    public Group8 Decode8(ArrayView<ushort> w, int at, int j)
    {
        int h = j >> 4, t = (j >> 2) & 3, l = 8 * (j & 3);
        int ql = at + 32 * h + 16 * (t & 1) + l / 2, qh = at + 64 + 16 * h + l / 2;
        int nibble = (t >> 1) * 4, high = 2 * t;
        // Six-bit q per byte: the nibble in bits 0-3, the two high bits moved to bits 4-5.
        uint lo = ((BlockBits.Bytes4(w, ql) >> nibble) & 0x0F0F0F0Fu) | (((BlockBits.Bytes4(w, qh) >> high) & 0x03030303u) << 4);
        uint hi = ((BlockBits.Bytes4(w, ql + 2) >> nibble) & 0x0F0F0F0Fu) | (((BlockBits.Bytes4(w, qh + 2) >> high) & 0x03030303u) << 4);
        int scale = (sbyte)(byte)BlockBits.Byte(w, at + 96, 8 * h + 2 * t + (l >> 4));
        return new()
        {
            Lo = BlockBits.Bytes(lo, 32f),
            Hi = BlockBits.Bytes(hi, 32f),
            Scale = BlockBits.Half(w[at + 104]) * scale, // the CPU's d * sc, then * (q - 32)
        };
    }
}

/// <summary>
/// NF4 (QLoRA): blocks of 64 = f32 absmax, 32 bytes of 4-bit codes, the first value of each pair in the high nibble;
/// x = Code[q] absmax with bitsandbytes' 16-value table (see src/Engine/Quant/NF4.cs). Values 8 j.. are bytes 4 + 4 j..
/// The table is a lookup with a run-time index, so it is a tree of selects on q's bits (registers only: an array
/// would live in local memory on the GPU), 15 selects per value.
/// </summary>
internal readonly struct Nf4Blocks : IBlockDecoder
{
    public int BlockSize => 64;
    public int BlockBytes => 36;

    public Group8 Decode8(ArrayView<ushort> w, int at, int j)
    {
        uint u = BlockBits.Bytes4(w, at + 2 + 2 * j); // byte i: values 2 i (high nibble) and 2 i + 1
        return new()
        {
            Lo = new(Code(u >> 4), Code(u), Code(u >> 12), Code(u >> 8)),
            Hi = new(Code(u >> 20), Code(u >> 16), Code(u >> 28), Code(u >> 24)),
            Scale = Interop.IntAsFloat(BlockBits.Bytes4(w, at)),
        };
    }

    /// <summary>bitsandbytes' NF4 value of the code in the low four bits of <paramref name="q"/> (the values of NF4.Code).</summary>
    private static float Code(uint q)
    {
        bool b0 = (q & 1) != 0, b1 = (q & 2) != 0, b2 = (q & 4) != 0;
        float c0 = Pick(b0, b1, b2, -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
            -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f);
        float c1 = Pick(b0, b1, b2, 0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
            0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f);
        return (q & 8) != 0 ? c1 : c0;
    }

    private static float Pick(bool b0, bool b1, bool b2, float v0, float v1, float v2, float v3, float v4, float v5, float v6, float v7)
    {
        float a = b0 ? v1 : v0, b = b0 ? v3 : v2, c = b0 ? v5 : v4, d = b0 ? v7 : v6;
        float ab = b1 ? b : a, cd = b1 ? d : c;
        return b2 ? cd : ab;
    }
}

/// <summary>
/// TQ2_0 (BitNet b1.58's ternary weights): super-blocks of 256 = 64 bytes of 2-bit codes, f16 d at byte 64; x = (q - 1) d
/// (see src/Engine/Quant/TQ2_0.cs). In half h, byte m holds values 128 h + 32 n + m in bits 2n, 2n + 1, so values 8 j..
/// are bits 2n of bytes 32 h + 8 (j % 4).., with h = j / 16 and n = (j / 4) % 4.
/// </summary>
internal readonly struct TQ2_0Blocks : IBlockDecoder
{
    public int BlockSize => 256;
    public int BlockBytes => 66;

    public Group8 Decode8(ArrayView<ushort> w, int at, int j)
    {
        int word = at + 16 * (j >> 4) + 4 * (j & 3), shift = 2 * ((j >> 2) & 3);
        return new()
        {
            Lo = BlockBits.Bytes((BlockBits.Bytes4(w, word) >> shift) & 0x03030303u, 1f),
            Hi = BlockBits.Bytes((BlockBits.Bytes4(w, word + 2) >> shift) & 0x03030303u, 1f),
            Scale = BlockBits.Half(w[at + 32]),
        };
    }
}
