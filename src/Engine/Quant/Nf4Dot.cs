using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedTensor.Quant;

/// <summary>
/// NF4 rows against float32 activations: the table is not uniform, so there is no integer dot product; the codes are
/// looked up instead. With AVX-512 the 16-entry table fits one register and vpermps looks up 16 codes at once;
/// the lookups are exact, so only the summation order differs from the plain loop (both sum absmax * sum_j code * x
/// per block; the plain loop in order, the vector one in 16 lanes).
/// </summary>
internal static class Nf4Dot
{
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xBytes, int blocks)
    {
        var x = MemoryMarshal.Cast<byte, float>(xBytes);
        var code = NF4.Code;
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var wb = w.Slice(b * NF4.BlockBytes, NF4.BlockBytes);
            var xs = x.Slice(b * NF4.BlockSize, NF4.BlockSize);
            float s = 0;
            for (int j = 0; j < 32; j++) s += code[wb[4 + j] >> 4] * xs[2 * j] + code[wb[4 + j] & 0x0F] * xs[2 * j + 1];
            sum += BinaryPrimitives.ReadSingleLittleEndian(wb) * s;
        }
        return sum;
    }

    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xBytes, int blocks)
    {
        if (!Avx512F.IsSupported || !Avx512BW.IsSupported) return DotScalar(w, xBytes, blocks);
        var table = Vector512.Create(NF4.Code);
        ref byte wr = ref MemoryMarshal.GetReference(w);
        ref float xr = ref MemoryMarshal.GetReference(MemoryMarshal.Cast<byte, float>(xBytes));
        var acc = Vector512<float>.Zero;
        var m4 = Vector128.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++)
        {
            ref byte wb = ref Unsafe.Add(ref wr, b * NF4.BlockBytes);
            ref float xb = ref Unsafe.Add(ref xr, b * NF4.BlockSize);
            var packed = Vector128.LoadUnsafe(ref Unsafe.Add(ref wb, 4)); // 32 bytes hold 64 codes: 16 bytes at a time
            var packed2 = Vector128.LoadUnsafe(ref Unsafe.Add(ref wb, 20));
            // Byte j holds values 2j (high nibble) and 2j + 1 (low): interleave to put the 64 codes in value order.
            var hi1 = Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & m4;
            var lo1 = packed & m4;
            var hi2 = Vector128.ShiftRightLogical(packed2.AsUInt16(), 4).AsByte() & m4;
            var lo2 = packed2 & m4;
            var s = Vector512<float>.Zero;
            s = Avx512F.FusedMultiplyAdd(Lookup(table, Sse2.UnpackLow(hi1, lo1)), Vector512.LoadUnsafe(ref xb), s);
            s = Avx512F.FusedMultiplyAdd(Lookup(table, Sse2.UnpackHigh(hi1, lo1)), Vector512.LoadUnsafe(ref xb, 16), s);
            s = Avx512F.FusedMultiplyAdd(Lookup(table, Sse2.UnpackLow(hi2, lo2)), Vector512.LoadUnsafe(ref xb, 32), s);
            s = Avx512F.FusedMultiplyAdd(Lookup(table, Sse2.UnpackHigh(hi2, lo2)), Vector512.LoadUnsafe(ref xb, 48), s);
            acc = Avx512F.FusedMultiplyAdd(s, Vector512.Create(Unsafe.ReadUnaligned<float>(ref wb)), acc);
        }
        return Vector512.Sum(acc);

        static Vector512<float> Lookup(Vector512<float> table, Vector128<byte> codes) =>
            Avx512F.PermuteVar16x32(table, Avx512F.ConvertToVector512Int32(codes));
    }
}
