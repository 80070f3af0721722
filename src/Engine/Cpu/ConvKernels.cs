using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedTensor.Cpu;

/// <summary>
/// The two register micro-kernels of the direct convolution (CpuConvDirect), variants of the SGEMM's
/// (SgemmKernels) in which one operand is read straight from the zero-padded image instead of a packed
/// buffer. The image is padded once, (C, Hp, Wp), and an output pixel is indexed "wide", l = oh * Wp + ow,
/// so that for tap k = (c, kh, kw) the im2col row k is the contiguous run
///     col[k, l] = padded[off[k] + l],    off[k] = (c * Hp + kh) * Wp + kw
/// (columns ow >= OW of a wide row are garbage that the caller drops or multiplies by zero).
///
/// Indirect (forward):  C[r, j] (+)= sum_p A[r, p] * padded[off[p] + j]   the B sliver row p starts at
///                      b + off[p]: one table read per rank-1 update replaces the whole B packing.
/// Rows (backward weight): C[r, j] += sum_p padded[off[r] + p] * B[p, j]   the A sliver's MR rows are MR
///                      streams of the image, broadcast one float at a time; B (dy transposed) is packed.
/// Tiles (see Tile): forward 8 x 48 on AVX-512 (24 zmm accumulators), backward weight the SGEMM's 12 x 32 or
/// 12 x 16 for few channels; 6 x 16 on AVX2 + FMA for both.
/// </summary>
internal static unsafe class ConvKernels
{
    /// <summary>The register tile (MR rows x NR columns) of the Indirect (forward) or Rows (backward weight) kernel.</summary>
    public static (int Mr, int Nr) Tile(SgemmIsa isa, bool rows) => isa switch
    {
        SgemmIsa.Avx512 => rows ? (12, 32) : (8, 48),
        SgemmIsa.Avx2 => (6, 16),
        _ => throw new ArgumentException($"no direct convolution kernel for {isa}", nameof(isa)),
    };

    /// <summary>
    /// The Rows tile for og output channels (its columns): on AVX-512 12 x 16 where whole 16s waste fewer columns
    /// than whole 32s (og = 16, 80, ...), else 12 x 32.
    /// </summary>
    public static (int Mr, int Nr) RowsTile(SgemmIsa isa, int og)
        => isa == SgemmIsa.Avx512 && (og + 15) / 16 * 16 < (og + 31) / 32 * 32 ? (12, 16) : Tile(isa, rows: true);

    /// <summary>
    /// C (8 x 48, row stride ldc) = or += A sliver (a[p * 8 + r]) times the rows b + off[p] of the image: the
    /// forward tile on AVX-512. Eight rows divide every channel count of YOLOv8n and the U-Net (16, 32, 64, 80, ...)
    /// where the SGEMM's 12 rows would compute 16 as 24; three B vectors and eight broadcasts feed 24 FMAs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx512Indirect8x48(int kc, float* a, float* b, int* off, float* c, nint ldc, bool accumulate)
    {
        Vector512<float> c0_0 = default; Vector512<float> c0_1 = default; Vector512<float> c0_2 = default;
        Vector512<float> c1_0 = default; Vector512<float> c1_1 = default; Vector512<float> c1_2 = default;
        Vector512<float> c2_0 = default; Vector512<float> c2_1 = default; Vector512<float> c2_2 = default;
        Vector512<float> c3_0 = default; Vector512<float> c3_1 = default; Vector512<float> c3_2 = default;
        Vector512<float> c4_0 = default; Vector512<float> c4_1 = default; Vector512<float> c4_2 = default;
        Vector512<float> c5_0 = default; Vector512<float> c5_1 = default; Vector512<float> c5_2 = default;
        Vector512<float> c6_0 = default; Vector512<float> c6_1 = default; Vector512<float> c6_2 = default;
        Vector512<float> c7_0 = default; Vector512<float> c7_1 = default; Vector512<float> c7_2 = default;
        for (int p = 0; p < kc; p++)
        {
            float* bp = b + off[p];
            var b0 = Vector512.Load(bp); var b1 = Vector512.Load(bp + 16); var b2 = Vector512.Load(bp + 32);
            var a0 = Vector512.Create(a[0]);
            c0_0 = Avx512F.FusedMultiplyAdd(a0, b0, c0_0); c0_1 = Avx512F.FusedMultiplyAdd(a0, b1, c0_1); c0_2 = Avx512F.FusedMultiplyAdd(a0, b2, c0_2);
            var a1 = Vector512.Create(a[1]);
            c1_0 = Avx512F.FusedMultiplyAdd(a1, b0, c1_0); c1_1 = Avx512F.FusedMultiplyAdd(a1, b1, c1_1); c1_2 = Avx512F.FusedMultiplyAdd(a1, b2, c1_2);
            var a2 = Vector512.Create(a[2]);
            c2_0 = Avx512F.FusedMultiplyAdd(a2, b0, c2_0); c2_1 = Avx512F.FusedMultiplyAdd(a2, b1, c2_1); c2_2 = Avx512F.FusedMultiplyAdd(a2, b2, c2_2);
            var a3 = Vector512.Create(a[3]);
            c3_0 = Avx512F.FusedMultiplyAdd(a3, b0, c3_0); c3_1 = Avx512F.FusedMultiplyAdd(a3, b1, c3_1); c3_2 = Avx512F.FusedMultiplyAdd(a3, b2, c3_2);
            var a4 = Vector512.Create(a[4]);
            c4_0 = Avx512F.FusedMultiplyAdd(a4, b0, c4_0); c4_1 = Avx512F.FusedMultiplyAdd(a4, b1, c4_1); c4_2 = Avx512F.FusedMultiplyAdd(a4, b2, c4_2);
            var a5 = Vector512.Create(a[5]);
            c5_0 = Avx512F.FusedMultiplyAdd(a5, b0, c5_0); c5_1 = Avx512F.FusedMultiplyAdd(a5, b1, c5_1); c5_2 = Avx512F.FusedMultiplyAdd(a5, b2, c5_2);
            var a6 = Vector512.Create(a[6]);
            c6_0 = Avx512F.FusedMultiplyAdd(a6, b0, c6_0); c6_1 = Avx512F.FusedMultiplyAdd(a6, b1, c6_1); c6_2 = Avx512F.FusedMultiplyAdd(a6, b2, c6_2);
            var a7 = Vector512.Create(a[7]);
            c7_0 = Avx512F.FusedMultiplyAdd(a7, b0, c7_0); c7_1 = Avx512F.FusedMultiplyAdd(a7, b1, c7_1); c7_2 = Avx512F.FusedMultiplyAdd(a7, b2, c7_2);
            a += 8;
        }
        Store512x3(c + 0 * ldc, c0_0, c0_1, c0_2, accumulate);
        Store512x3(c + 1 * ldc, c1_0, c1_1, c1_2, accumulate);
        Store512x3(c + 2 * ldc, c2_0, c2_1, c2_2, accumulate);
        Store512x3(c + 3 * ldc, c3_0, c3_1, c3_2, accumulate);
        Store512x3(c + 4 * ldc, c4_0, c4_1, c4_2, accumulate);
        Store512x3(c + 5 * ldc, c5_0, c5_1, c5_2, accumulate);
        Store512x3(c + 6 * ldc, c6_0, c6_1, c6_2, accumulate);
        Store512x3(c + 7 * ldc, c7_0, c7_1, c7_2, accumulate);
    }

    /// <summary>C (12 x 32, row stride ldc) += the image rows x + off[r] (r &lt; 12, kc floats each) times the packed B sliver (b[p * 32 + j]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx512Rows12x32(int kc, float* x, int* off, float* b, float* c, nint ldc)
    {
        Vector512<float> c0_0 = default; Vector512<float> c0_1 = default;
        Vector512<float> c1_0 = default; Vector512<float> c1_1 = default;
        Vector512<float> c2_0 = default; Vector512<float> c2_1 = default;
        Vector512<float> c3_0 = default; Vector512<float> c3_1 = default;
        Vector512<float> c4_0 = default; Vector512<float> c4_1 = default;
        Vector512<float> c5_0 = default; Vector512<float> c5_1 = default;
        Vector512<float> c6_0 = default; Vector512<float> c6_1 = default;
        Vector512<float> c7_0 = default; Vector512<float> c7_1 = default;
        Vector512<float> c8_0 = default; Vector512<float> c8_1 = default;
        Vector512<float> c9_0 = default; Vector512<float> c9_1 = default;
        Vector512<float> c10_0 = default; Vector512<float> c10_1 = default;
        Vector512<float> c11_0 = default; Vector512<float> c11_1 = default;
        float* x0 = x + off[0], x1 = x + off[1], x2 = x + off[2], x3 = x + off[3], x4 = x + off[4], x5 = x + off[5];
        float* x6 = x + off[6], x7 = x + off[7], x8 = x + off[8], x9 = x + off[9], x10 = x + off[10], x11 = x + off[11];
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b); var b1 = Vector512.Load(b + 16);
            var a0 = Vector512.Create(x0[p]);
            c0_0 = Avx512F.FusedMultiplyAdd(a0, b0, c0_0); c0_1 = Avx512F.FusedMultiplyAdd(a0, b1, c0_1);
            var a1 = Vector512.Create(x1[p]);
            c1_0 = Avx512F.FusedMultiplyAdd(a1, b0, c1_0); c1_1 = Avx512F.FusedMultiplyAdd(a1, b1, c1_1);
            var a2 = Vector512.Create(x2[p]);
            c2_0 = Avx512F.FusedMultiplyAdd(a2, b0, c2_0); c2_1 = Avx512F.FusedMultiplyAdd(a2, b1, c2_1);
            var a3 = Vector512.Create(x3[p]);
            c3_0 = Avx512F.FusedMultiplyAdd(a3, b0, c3_0); c3_1 = Avx512F.FusedMultiplyAdd(a3, b1, c3_1);
            var a4 = Vector512.Create(x4[p]);
            c4_0 = Avx512F.FusedMultiplyAdd(a4, b0, c4_0); c4_1 = Avx512F.FusedMultiplyAdd(a4, b1, c4_1);
            var a5 = Vector512.Create(x5[p]);
            c5_0 = Avx512F.FusedMultiplyAdd(a5, b0, c5_0); c5_1 = Avx512F.FusedMultiplyAdd(a5, b1, c5_1);
            var a6 = Vector512.Create(x6[p]);
            c6_0 = Avx512F.FusedMultiplyAdd(a6, b0, c6_0); c6_1 = Avx512F.FusedMultiplyAdd(a6, b1, c6_1);
            var a7 = Vector512.Create(x7[p]);
            c7_0 = Avx512F.FusedMultiplyAdd(a7, b0, c7_0); c7_1 = Avx512F.FusedMultiplyAdd(a7, b1, c7_1);
            var a8 = Vector512.Create(x8[p]);
            c8_0 = Avx512F.FusedMultiplyAdd(a8, b0, c8_0); c8_1 = Avx512F.FusedMultiplyAdd(a8, b1, c8_1);
            var a9 = Vector512.Create(x9[p]);
            c9_0 = Avx512F.FusedMultiplyAdd(a9, b0, c9_0); c9_1 = Avx512F.FusedMultiplyAdd(a9, b1, c9_1);
            var a10 = Vector512.Create(x10[p]);
            c10_0 = Avx512F.FusedMultiplyAdd(a10, b0, c10_0); c10_1 = Avx512F.FusedMultiplyAdd(a10, b1, c10_1);
            var a11 = Vector512.Create(x11[p]);
            c11_0 = Avx512F.FusedMultiplyAdd(a11, b0, c11_0); c11_1 = Avx512F.FusedMultiplyAdd(a11, b1, c11_1);
            b += 32;
        }
        Store512(c + 0 * ldc, c0_0, c0_1, true); Store512(c + 1 * ldc, c1_0, c1_1, true);
        Store512(c + 2 * ldc, c2_0, c2_1, true); Store512(c + 3 * ldc, c3_0, c3_1, true);
        Store512(c + 4 * ldc, c4_0, c4_1, true); Store512(c + 5 * ldc, c5_0, c5_1, true);
        Store512(c + 6 * ldc, c6_0, c6_1, true); Store512(c + 7 * ldc, c7_0, c7_1, true);
        Store512(c + 8 * ldc, c8_0, c8_1, true); Store512(c + 9 * ldc, c9_0, c9_1, true);
        Store512(c + 10 * ldc, c10_0, c10_1, true); Store512(c + 11 * ldc, c11_0, c11_1, true);
    }

    /// <summary>
    /// <see cref="Avx512Rows12x32"/> one vector wide, for 16 output channels (YOLOv8n's first layers): 12 FMAs
    /// per 12 broadcasts and one load, where the 32-wide tile would spend half its FMAs on zero columns.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx512Rows12x16(int kc, float* x, int* off, float* b, float* c, nint ldc)
    {
        Vector512<float> c0 = default;
        Vector512<float> c1 = default;
        Vector512<float> c2 = default;
        Vector512<float> c3 = default;
        Vector512<float> c4 = default;
        Vector512<float> c5 = default;
        Vector512<float> c6 = default;
        Vector512<float> c7 = default;
        Vector512<float> c8 = default;
        Vector512<float> c9 = default;
        Vector512<float> c10 = default;
        Vector512<float> c11 = default;
        float* x0 = x + off[0], x1 = x + off[1], x2 = x + off[2], x3 = x + off[3], x4 = x + off[4], x5 = x + off[5];
        float* x6 = x + off[6], x7 = x + off[7], x8 = x + off[8], x9 = x + off[9], x10 = x + off[10], x11 = x + off[11];
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            c0 = Avx512F.FusedMultiplyAdd(Vector512.Create(x0[p]), b0, c0);
            c1 = Avx512F.FusedMultiplyAdd(Vector512.Create(x1[p]), b0, c1);
            c2 = Avx512F.FusedMultiplyAdd(Vector512.Create(x2[p]), b0, c2);
            c3 = Avx512F.FusedMultiplyAdd(Vector512.Create(x3[p]), b0, c3);
            c4 = Avx512F.FusedMultiplyAdd(Vector512.Create(x4[p]), b0, c4);
            c5 = Avx512F.FusedMultiplyAdd(Vector512.Create(x5[p]), b0, c5);
            c6 = Avx512F.FusedMultiplyAdd(Vector512.Create(x6[p]), b0, c6);
            c7 = Avx512F.FusedMultiplyAdd(Vector512.Create(x7[p]), b0, c7);
            c8 = Avx512F.FusedMultiplyAdd(Vector512.Create(x8[p]), b0, c8);
            c9 = Avx512F.FusedMultiplyAdd(Vector512.Create(x9[p]), b0, c9);
            c10 = Avx512F.FusedMultiplyAdd(Vector512.Create(x10[p]), b0, c10);
            c11 = Avx512F.FusedMultiplyAdd(Vector512.Create(x11[p]), b0, c11);
            b += 16;
        }
        (c0 + Vector512.Load(c + 0 * ldc)).Store(c + 0 * ldc);
        (c1 + Vector512.Load(c + 1 * ldc)).Store(c + 1 * ldc);
        (c2 + Vector512.Load(c + 2 * ldc)).Store(c + 2 * ldc);
        (c3 + Vector512.Load(c + 3 * ldc)).Store(c + 3 * ldc);
        (c4 + Vector512.Load(c + 4 * ldc)).Store(c + 4 * ldc);
        (c5 + Vector512.Load(c + 5 * ldc)).Store(c + 5 * ldc);
        (c6 + Vector512.Load(c + 6 * ldc)).Store(c + 6 * ldc);
        (c7 + Vector512.Load(c + 7 * ldc)).Store(c + 7 * ldc);
        (c8 + Vector512.Load(c + 8 * ldc)).Store(c + 8 * ldc);
        (c9 + Vector512.Load(c + 9 * ldc)).Store(c + 9 * ldc);
        (c10 + Vector512.Load(c + 10 * ldc)).Store(c + 10 * ldc);
        (c11 + Vector512.Load(c + 11 * ldc)).Store(c + 11 * ldc);
    }

    /// <summary>The AVX2 + FMA twin of <see cref="Avx512Indirect8x48"/>: a 6 x 16 tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx2Indirect6x16(int kc, float* a, float* b, int* off, float* c, nint ldc, bool accumulate)
    {
        Vector256<float> c0_0 = default; Vector256<float> c0_1 = default;
        Vector256<float> c1_0 = default; Vector256<float> c1_1 = default;
        Vector256<float> c2_0 = default; Vector256<float> c2_1 = default;
        Vector256<float> c3_0 = default; Vector256<float> c3_1 = default;
        Vector256<float> c4_0 = default; Vector256<float> c4_1 = default;
        Vector256<float> c5_0 = default; Vector256<float> c5_1 = default;
        for (int p = 0; p < kc; p++)
        {
            float* bp = b + off[p];
            var b0 = Vector256.Load(bp); var b1 = Vector256.Load(bp + 8);
            var a0 = Vector256.Create(a[0]);
            c0_0 = Fma.MultiplyAdd(a0, b0, c0_0); c0_1 = Fma.MultiplyAdd(a0, b1, c0_1);
            var a1 = Vector256.Create(a[1]);
            c1_0 = Fma.MultiplyAdd(a1, b0, c1_0); c1_1 = Fma.MultiplyAdd(a1, b1, c1_1);
            var a2 = Vector256.Create(a[2]);
            c2_0 = Fma.MultiplyAdd(a2, b0, c2_0); c2_1 = Fma.MultiplyAdd(a2, b1, c2_1);
            var a3 = Vector256.Create(a[3]);
            c3_0 = Fma.MultiplyAdd(a3, b0, c3_0); c3_1 = Fma.MultiplyAdd(a3, b1, c3_1);
            var a4 = Vector256.Create(a[4]);
            c4_0 = Fma.MultiplyAdd(a4, b0, c4_0); c4_1 = Fma.MultiplyAdd(a4, b1, c4_1);
            var a5 = Vector256.Create(a[5]);
            c5_0 = Fma.MultiplyAdd(a5, b0, c5_0); c5_1 = Fma.MultiplyAdd(a5, b1, c5_1);
            a += 6;
        }
        Store256(c + 0 * ldc, c0_0, c0_1, accumulate); Store256(c + 1 * ldc, c1_0, c1_1, accumulate);
        Store256(c + 2 * ldc, c2_0, c2_1, accumulate); Store256(c + 3 * ldc, c3_0, c3_1, accumulate);
        Store256(c + 4 * ldc, c4_0, c4_1, accumulate); Store256(c + 5 * ldc, c5_0, c5_1, accumulate);
    }

    /// <summary>The AVX2 + FMA twin of <see cref="Avx512Rows12x32"/>: a 6 x 16 tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx2Rows6x16(int kc, float* x, int* off, float* b, float* c, nint ldc)
    {
        Vector256<float> c0_0 = default; Vector256<float> c0_1 = default;
        Vector256<float> c1_0 = default; Vector256<float> c1_1 = default;
        Vector256<float> c2_0 = default; Vector256<float> c2_1 = default;
        Vector256<float> c3_0 = default; Vector256<float> c3_1 = default;
        Vector256<float> c4_0 = default; Vector256<float> c4_1 = default;
        Vector256<float> c5_0 = default; Vector256<float> c5_1 = default;
        float* x0 = x + off[0], x1 = x + off[1], x2 = x + off[2], x3 = x + off[3], x4 = x + off[4], x5 = x + off[5];
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b); var b1 = Vector256.Load(b + 8);
            var a0 = Vector256.Create(x0[p]);
            c0_0 = Fma.MultiplyAdd(a0, b0, c0_0); c0_1 = Fma.MultiplyAdd(a0, b1, c0_1);
            var a1 = Vector256.Create(x1[p]);
            c1_0 = Fma.MultiplyAdd(a1, b0, c1_0); c1_1 = Fma.MultiplyAdd(a1, b1, c1_1);
            var a2 = Vector256.Create(x2[p]);
            c2_0 = Fma.MultiplyAdd(a2, b0, c2_0); c2_1 = Fma.MultiplyAdd(a2, b1, c2_1);
            var a3 = Vector256.Create(x3[p]);
            c3_0 = Fma.MultiplyAdd(a3, b0, c3_0); c3_1 = Fma.MultiplyAdd(a3, b1, c3_1);
            var a4 = Vector256.Create(x4[p]);
            c4_0 = Fma.MultiplyAdd(a4, b0, c4_0); c4_1 = Fma.MultiplyAdd(a4, b1, c4_1);
            var a5 = Vector256.Create(x5[p]);
            c5_0 = Fma.MultiplyAdd(a5, b0, c5_0); c5_1 = Fma.MultiplyAdd(a5, b1, c5_1);
            b += 16;
        }
        Store256(c + 0 * ldc, c0_0, c0_1, true); Store256(c + 1 * ldc, c1_0, c1_1, true);
        Store256(c + 2 * ldc, c2_0, c2_1, true); Store256(c + 3 * ldc, c3_0, c3_1, true);
        Store256(c + 4 * ldc, c4_0, c4_1, true); Store256(c + 5 * ldc, c5_0, c5_1, true);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, Vector512<float> v0, Vector512<float> v1, bool accumulate)
    {
        if (accumulate)
        {
            v0 += Vector512.Load(c);
            v1 += Vector512.Load(c + 16);
        }
        v0.Store(c);
        v1.Store(c + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512x3(float* c, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2, bool accumulate)
    {
        if (accumulate)
        {
            v0 += Vector512.Load(c);
            v1 += Vector512.Load(c + 16);
            v2 += Vector512.Load(c + 32);
        }
        v0.Store(c);
        v1.Store(c + 16);
        v2.Store(c + 32);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store256(float* c, Vector256<float> v0, Vector256<float> v1, bool accumulate)
    {
        if (accumulate)
        {
            v0 += Vector256.Load(c);
            v1 += Vector256.Load(c + 8);
        }
        v0.Store(c);
        v1.Store(c + 8);
    }
}
