using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedTensor.Quant;

/// <summary>
/// Q8_0: blocks of 32 values = f16 scale d, int8 q[32]; x = q * d (34 bytes, 8.5 bits per value).
/// Also the format activations are encoded in for the integer dot products of Q8_0, Q4_0 and friends.
/// </summary>
public static class Q8_0
{
    public const int BlockSize = 32, BlockBytes = 2 + 32;

    public static readonly BlockFormat Format = new(DType.Q8_0, BlockSize, BlockBytes, Decode)
    {
        GgmlType = 8,
        Encode = Encode,
        DotType = DType.Q8_0,
        Dot = Dot,
        DotReference = DotScalar,
    };

    public static void Decode(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            var blk = src.Slice(b * BlockBytes, BlockBytes);
            float d = (float)BinaryPrimitives.ReadHalfLittleEndian(blk);
            for (int j = 0; j < BlockSize; j++) dst[b * BlockSize + j] = (sbyte)blk[2 + j] * d;
        }
    }

    /// <summary>ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = round(x / d) (half away from zero).</summary>
    public static void Encode(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            var x = src.Slice(b * BlockSize, BlockSize);
            var blk = dst.Slice(b * BlockBytes, BlockBytes);
            float amax = 0;
            foreach (float v in x) amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(blk, (Half)d);
            for (int j = 0; j < BlockSize; j++) blk[2 + j] = (byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>
    /// ggml's vec_dot_q8_0_q8_0: sum_b dw_b * dx_b * sum_j qw_j * qx_j. The AVX2 loop keeps each block's integer sum in
    /// 8 int32 lanes and accumulates (dw * dx) * lanes in two float vectors (ggml's order too): no horizontal sum per
    /// block. Integer sums are exact; only the order of the float additions differs from <see cref="DotScalar"/>.
    /// </summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        if (!Avx2.IsSupported || !Fma.IsSupported) return DotScalar(w, x, blocks);
        ref byte wr = ref MemoryMarshal.GetReference(w);
        ref byte xr = ref MemoryMarshal.GetReference(x);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        Span<float> d = stackalloc float[8];
        int b = 0;
        // Groups of 8 blocks: their 16 scales converted in two vectors, then 8 blocks against the products d[i].
        for (; b + 8 <= blocks; b += 8)
        {
            ref byte wg = ref Unsafe.Add(ref wr, b * BlockBytes);
            ref byte xg = ref Unsafe.Add(ref xr, b * BlockBytes);
            (QuantMath.Halves8(ref wg, BlockBytes) * QuantMath.Halves8(ref xg, BlockBytes)).StoreUnsafe(ref d[0]);
            for (int i = 0; i < 8; i += 2)
            {
                acc0 = Block(ref Unsafe.Add(ref wg, i * BlockBytes), ref Unsafe.Add(ref xg, i * BlockBytes), d[i], acc0);
                acc1 = Block(ref Unsafe.Add(ref wg, (i + 1) * BlockBytes), ref Unsafe.Add(ref xg, (i + 1) * BlockBytes), d[i + 1], acc1);
            }
        }
        for (; b < blocks; b++)
        {
            ref byte wb = ref Unsafe.Add(ref wr, b * BlockBytes);
            ref byte xb = ref Unsafe.Add(ref xr, b * BlockBytes);
            acc0 = Block(ref wb, ref xb, QuantMath.HalfAt(ref wb) * QuantMath.HalfAt(ref xb), acc0);
        }
        return Vector256.Sum(acc0 + acc1);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector256<float> Block(ref byte wb, ref byte xb, float d, Vector256<float> acc)
        {
            var qw = Vector256.LoadUnsafe(ref Unsafe.Add(ref wb, 2)).AsSByte();
            var qx = Vector256.LoadUnsafe(ref Unsafe.Add(ref xb, 2)).AsSByte();
            return Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotI8Lanes(qw, qx)), Vector256.Create(d), acc);
        }
    }

    /// <summary>The plain loop of <see cref="Dot"/>, kept as its reference.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * BlockBytes, BlockBytes);
            var xb = x.Slice(b * BlockBytes, BlockBytes);
            int acc = 0;
            for (int j = 0; j < BlockSize; j++) acc += (sbyte)wb[2 + j] * (sbyte)xb[2 + j];
            sum += (float)BinaryPrimitives.ReadHalfLittleEndian(wb) * (float)BinaryPrimitives.ReadHalfLittleEndian(xb) * acc;
        }
        return sum;
    }

    /// <summary>
    /// Sum of 32 int8 products with AVX2 (ggml's mul_sum_i8_pairs): maddubs needs an unsigned operand, so it multiplies
    /// |a| by b carrying a's sign, giving int16 pair sums, then madd with ones widens them to int32.
    /// Pair sums stay below int16's limit unless both operands hold -128 (not produced by the encoders here).
    /// </summary>
    internal static int DotI8x32(Vector256<sbyte> a, Vector256<sbyte> b) => Vector256.Sum(DotI8Lanes(a, b));

    /// <summary>
    /// The 32 products a_j b_j summed in 8 int32 lanes (4 each). With AVX-VNNI one vpdpbusd does it on |a| and b carrying
    /// a's sign; without, maddubs and madd as in <see cref="DotI8x32"/>. Needs a_j, b_j != -128 (as there).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> DotI8Lanes(Vector256<sbyte> a, Vector256<sbyte> b)
    {
        if (AvxVnni.IsSupported) return AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Avx2.Sign(a, a).AsByte(), Avx2.Sign(b, a));
        var pairs = Avx2.MultiplyAddAdjacent(Avx2.Sign(a, a).AsByte(), Avx2.Sign(b, a)); // (16) int16
        return Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));               // (8) int32
    }
}
