using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedTensor.Cpu;

/// <summary>
/// The SGEMM micro-kernels. Each computes one MR x NR tile of C from a packed A sliver (MR x kc,
/// stored column by column: a[p * MR + r]) and a packed B sliver (kc x NR, stored row by row:
/// b[p * NR + j]), holding the whole tile in vector registers across the kc rank-1 updates:
///
///     for p in 0..kc:  acc[r, :] += A[r, p] * B[p, :]    (one broadcast of A[r, p], NR/W FMAs per row)
///     C_tile = acc + beta * C_tile                         (alpha was folded into A when packing)
///
/// Register budget. x64 with AVX-512 has 32 zmm registers: the 12 x 32 tile takes 24 accumulators,
/// 2 for the B row and 1 for the broadcast A value. AVX2 has 16 ymm registers: the 6 x 16 tile takes
/// 12 accumulators + 2 + 1 (the classic Haswell shape). Per k step the 12 x 32 kernel issues 24 FMAs
/// for 2 vector loads and 12 broadcasts, so the FMA pipes, not the loads, set the pace; and 24
/// independent accumulators more than cover FMA latency (4 cycles) x 2 pipes.
///
/// The code is written out row by row on purpose: the JIT keeps each named local in a register,
/// which it would not do for an array or span of accumulators.
/// beta == 0 never reads C (so NaN or garbage in C does not leak in, as BLAS specifies).
/// </summary>
internal static unsafe class SgemmKernels
{
    /// <summary>The AVX-512 tile: 12 rows x 32 columns (2 zmm registers per row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Avx512Kernel12x32(int kc, float* a, float* b, float* c, nint ldc, float beta)
    {
        // 24 accumulators: row r, vector v holds C[r, 16v .. 16v+15]
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
        for (int p = 0; p < kc; p++)
        {
            // one rank-1 update: column p of the A sliver times row p of the B sliver
            var b0 = Vector512.Load(b + 0); var b1 = Vector512.Load(b + 16);
            var a0 = Vector512.Create(a[0]);
            c0_0 = Avx512F.FusedMultiplyAdd(a0, b0, c0_0); c0_1 = Avx512F.FusedMultiplyAdd(a0, b1, c0_1);
            var a1 = Vector512.Create(a[1]);
            c1_0 = Avx512F.FusedMultiplyAdd(a1, b0, c1_0); c1_1 = Avx512F.FusedMultiplyAdd(a1, b1, c1_1);
            var a2 = Vector512.Create(a[2]);
            c2_0 = Avx512F.FusedMultiplyAdd(a2, b0, c2_0); c2_1 = Avx512F.FusedMultiplyAdd(a2, b1, c2_1);
            var a3 = Vector512.Create(a[3]);
            c3_0 = Avx512F.FusedMultiplyAdd(a3, b0, c3_0); c3_1 = Avx512F.FusedMultiplyAdd(a3, b1, c3_1);
            var a4 = Vector512.Create(a[4]);
            c4_0 = Avx512F.FusedMultiplyAdd(a4, b0, c4_0); c4_1 = Avx512F.FusedMultiplyAdd(a4, b1, c4_1);
            var a5 = Vector512.Create(a[5]);
            c5_0 = Avx512F.FusedMultiplyAdd(a5, b0, c5_0); c5_1 = Avx512F.FusedMultiplyAdd(a5, b1, c5_1);
            var a6 = Vector512.Create(a[6]);
            c6_0 = Avx512F.FusedMultiplyAdd(a6, b0, c6_0); c6_1 = Avx512F.FusedMultiplyAdd(a6, b1, c6_1);
            var a7 = Vector512.Create(a[7]);
            c7_0 = Avx512F.FusedMultiplyAdd(a7, b0, c7_0); c7_1 = Avx512F.FusedMultiplyAdd(a7, b1, c7_1);
            var a8 = Vector512.Create(a[8]);
            c8_0 = Avx512F.FusedMultiplyAdd(a8, b0, c8_0); c8_1 = Avx512F.FusedMultiplyAdd(a8, b1, c8_1);
            var a9 = Vector512.Create(a[9]);
            c9_0 = Avx512F.FusedMultiplyAdd(a9, b0, c9_0); c9_1 = Avx512F.FusedMultiplyAdd(a9, b1, c9_1);
            var a10 = Vector512.Create(a[10]);
            c10_0 = Avx512F.FusedMultiplyAdd(a10, b0, c10_0); c10_1 = Avx512F.FusedMultiplyAdd(a10, b1, c10_1);
            var a11 = Vector512.Create(a[11]);
            c11_0 = Avx512F.FusedMultiplyAdd(a11, b0, c11_0); c11_1 = Avx512F.FusedMultiplyAdd(a11, b1, c11_1);
            a += 12;
            b += 32;
        }
        if (beta == 0f)
        {
            c0_0.Store(c + 0 * ldc + 0); c0_1.Store(c + 0 * ldc + 16);
            c1_0.Store(c + 1 * ldc + 0); c1_1.Store(c + 1 * ldc + 16);
            c2_0.Store(c + 2 * ldc + 0); c2_1.Store(c + 2 * ldc + 16);
            c3_0.Store(c + 3 * ldc + 0); c3_1.Store(c + 3 * ldc + 16);
            c4_0.Store(c + 4 * ldc + 0); c4_1.Store(c + 4 * ldc + 16);
            c5_0.Store(c + 5 * ldc + 0); c5_1.Store(c + 5 * ldc + 16);
            c6_0.Store(c + 6 * ldc + 0); c6_1.Store(c + 6 * ldc + 16);
            c7_0.Store(c + 7 * ldc + 0); c7_1.Store(c + 7 * ldc + 16);
            c8_0.Store(c + 8 * ldc + 0); c8_1.Store(c + 8 * ldc + 16);
            c9_0.Store(c + 9 * ldc + 0); c9_1.Store(c + 9 * ldc + 16);
            c10_0.Store(c + 10 * ldc + 0); c10_1.Store(c + 10 * ldc + 16);
            c11_0.Store(c + 11 * ldc + 0); c11_1.Store(c + 11 * ldc + 16);
        }
        else
        {
            var vb = Vector512.Create(beta);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 0 * ldc + 0), c0_0).Store(c + 0 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 0 * ldc + 16), c0_1).Store(c + 0 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 1 * ldc + 0), c1_0).Store(c + 1 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 1 * ldc + 16), c1_1).Store(c + 1 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 2 * ldc + 0), c2_0).Store(c + 2 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 2 * ldc + 16), c2_1).Store(c + 2 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 3 * ldc + 0), c3_0).Store(c + 3 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 3 * ldc + 16), c3_1).Store(c + 3 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 4 * ldc + 0), c4_0).Store(c + 4 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 4 * ldc + 16), c4_1).Store(c + 4 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 5 * ldc + 0), c5_0).Store(c + 5 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 5 * ldc + 16), c5_1).Store(c + 5 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 6 * ldc + 0), c6_0).Store(c + 6 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 6 * ldc + 16), c6_1).Store(c + 6 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 7 * ldc + 0), c7_0).Store(c + 7 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 7 * ldc + 16), c7_1).Store(c + 7 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 8 * ldc + 0), c8_0).Store(c + 8 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 8 * ldc + 16), c8_1).Store(c + 8 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 9 * ldc + 0), c9_0).Store(c + 9 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 9 * ldc + 16), c9_1).Store(c + 9 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 10 * ldc + 0), c10_0).Store(c + 10 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 10 * ldc + 16), c10_1).Store(c + 10 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 11 * ldc + 0), c11_0).Store(c + 11 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 11 * ldc + 16), c11_1).Store(c + 11 * ldc + 16);
        }
    }

internal static void Avx512Kernel8x32(int kc, float* a, float* b, float* c, nint ldc, float beta)
    {
        // 16 accumulators: row r, vector v holds C[r, 16v .. 16v+15]
        Vector512<float> c0_0 = default; Vector512<float> c0_1 = default;
        Vector512<float> c1_0 = default; Vector512<float> c1_1 = default;
        Vector512<float> c2_0 = default; Vector512<float> c2_1 = default;
        Vector512<float> c3_0 = default; Vector512<float> c3_1 = default;
        Vector512<float> c4_0 = default; Vector512<float> c4_1 = default;
        Vector512<float> c5_0 = default; Vector512<float> c5_1 = default;
        Vector512<float> c6_0 = default; Vector512<float> c6_1 = default;
        Vector512<float> c7_0 = default; Vector512<float> c7_1 = default;
        for (int p = 0; p < kc; p++)
        {
            // one rank-1 update: column p of the A sliver times row p of the B sliver
            var b0 = Vector512.Load(b + 0); var b1 = Vector512.Load(b + 16);
            var a0 = Vector512.Create(a[0]);
            c0_0 = Avx512F.FusedMultiplyAdd(a0, b0, c0_0); c0_1 = Avx512F.FusedMultiplyAdd(a0, b1, c0_1);
            var a1 = Vector512.Create(a[1]);
            c1_0 = Avx512F.FusedMultiplyAdd(a1, b0, c1_0); c1_1 = Avx512F.FusedMultiplyAdd(a1, b1, c1_1);
            var a2 = Vector512.Create(a[2]);
            c2_0 = Avx512F.FusedMultiplyAdd(a2, b0, c2_0); c2_1 = Avx512F.FusedMultiplyAdd(a2, b1, c2_1);
            var a3 = Vector512.Create(a[3]);
            c3_0 = Avx512F.FusedMultiplyAdd(a3, b0, c3_0); c3_1 = Avx512F.FusedMultiplyAdd(a3, b1, c3_1);
            var a4 = Vector512.Create(a[4]);
            c4_0 = Avx512F.FusedMultiplyAdd(a4, b0, c4_0); c4_1 = Avx512F.FusedMultiplyAdd(a4, b1, c4_1);
            var a5 = Vector512.Create(a[5]);
            c5_0 = Avx512F.FusedMultiplyAdd(a5, b0, c5_0); c5_1 = Avx512F.FusedMultiplyAdd(a5, b1, c5_1);
            var a6 = Vector512.Create(a[6]);
            c6_0 = Avx512F.FusedMultiplyAdd(a6, b0, c6_0); c6_1 = Avx512F.FusedMultiplyAdd(a6, b1, c6_1);
            var a7 = Vector512.Create(a[7]);
            c7_0 = Avx512F.FusedMultiplyAdd(a7, b0, c7_0); c7_1 = Avx512F.FusedMultiplyAdd(a7, b1, c7_1);
            a += 8;
            b += 32;
        }
        if (beta == 0f)
        {
            c0_0.Store(c + 0 * ldc + 0); c0_1.Store(c + 0 * ldc + 16);
            c1_0.Store(c + 1 * ldc + 0); c1_1.Store(c + 1 * ldc + 16);
            c2_0.Store(c + 2 * ldc + 0); c2_1.Store(c + 2 * ldc + 16);
            c3_0.Store(c + 3 * ldc + 0); c3_1.Store(c + 3 * ldc + 16);
            c4_0.Store(c + 4 * ldc + 0); c4_1.Store(c + 4 * ldc + 16);
            c5_0.Store(c + 5 * ldc + 0); c5_1.Store(c + 5 * ldc + 16);
            c6_0.Store(c + 6 * ldc + 0); c6_1.Store(c + 6 * ldc + 16);
            c7_0.Store(c + 7 * ldc + 0); c7_1.Store(c + 7 * ldc + 16);
        }
        else
        {
            var vb = Vector512.Create(beta);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 0 * ldc + 0), c0_0).Store(c + 0 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 0 * ldc + 16), c0_1).Store(c + 0 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 1 * ldc + 0), c1_0).Store(c + 1 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 1 * ldc + 16), c1_1).Store(c + 1 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 2 * ldc + 0), c2_0).Store(c + 2 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 2 * ldc + 16), c2_1).Store(c + 2 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 3 * ldc + 0), c3_0).Store(c + 3 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 3 * ldc + 16), c3_1).Store(c + 3 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 4 * ldc + 0), c4_0).Store(c + 4 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 4 * ldc + 16), c4_1).Store(c + 4 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 5 * ldc + 0), c5_0).Store(c + 5 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 5 * ldc + 16), c5_1).Store(c + 5 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 6 * ldc + 0), c6_0).Store(c + 6 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 6 * ldc + 16), c6_1).Store(c + 6 * ldc + 16);
            Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 7 * ldc + 0), c7_0).Store(c + 7 * ldc + 0); Avx512F.FusedMultiplyAdd(vb, Vector512.Load(c + 7 * ldc + 16), c7_1).Store(c + 7 * ldc + 16);
        }
    }

/// <summary>The AVX2 + FMA tile: 6 rows x 16 columns (2 ymm registers per row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Avx2Kernel6x16(int kc, float* a, float* b, float* c, nint ldc, float beta)
    {
        // 12 accumulators: row r, vector v holds C[r, 8v .. 8v+7]
        Vector256<float> c0_0 = default; Vector256<float> c0_1 = default;
        Vector256<float> c1_0 = default; Vector256<float> c1_1 = default;
        Vector256<float> c2_0 = default; Vector256<float> c2_1 = default;
        Vector256<float> c3_0 = default; Vector256<float> c3_1 = default;
        Vector256<float> c4_0 = default; Vector256<float> c4_1 = default;
        Vector256<float> c5_0 = default; Vector256<float> c5_1 = default;
        for (int p = 0; p < kc; p++)
        {
            // one rank-1 update: column p of the A sliver times row p of the B sliver
            var b0 = Vector256.Load(b + 0); var b1 = Vector256.Load(b + 8);
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
            b += 16;
        }
        if (beta == 0f)
        {
            c0_0.Store(c + 0 * ldc + 0); c0_1.Store(c + 0 * ldc + 8);
            c1_0.Store(c + 1 * ldc + 0); c1_1.Store(c + 1 * ldc + 8);
            c2_0.Store(c + 2 * ldc + 0); c2_1.Store(c + 2 * ldc + 8);
            c3_0.Store(c + 3 * ldc + 0); c3_1.Store(c + 3 * ldc + 8);
            c4_0.Store(c + 4 * ldc + 0); c4_1.Store(c + 4 * ldc + 8);
            c5_0.Store(c + 5 * ldc + 0); c5_1.Store(c + 5 * ldc + 8);
        }
        else
        {
            var vb = Vector256.Create(beta);
            Fma.MultiplyAdd(vb, Vector256.Load(c + 0 * ldc + 0), c0_0).Store(c + 0 * ldc + 0); Fma.MultiplyAdd(vb, Vector256.Load(c + 0 * ldc + 8), c0_1).Store(c + 0 * ldc + 8);
            Fma.MultiplyAdd(vb, Vector256.Load(c + 1 * ldc + 0), c1_0).Store(c + 1 * ldc + 0); Fma.MultiplyAdd(vb, Vector256.Load(c + 1 * ldc + 8), c1_1).Store(c + 1 * ldc + 8);
            Fma.MultiplyAdd(vb, Vector256.Load(c + 2 * ldc + 0), c2_0).Store(c + 2 * ldc + 0); Fma.MultiplyAdd(vb, Vector256.Load(c + 2 * ldc + 8), c2_1).Store(c + 2 * ldc + 8);
            Fma.MultiplyAdd(vb, Vector256.Load(c + 3 * ldc + 0), c3_0).Store(c + 3 * ldc + 0); Fma.MultiplyAdd(vb, Vector256.Load(c + 3 * ldc + 8), c3_1).Store(c + 3 * ldc + 8);
            Fma.MultiplyAdd(vb, Vector256.Load(c + 4 * ldc + 0), c4_0).Store(c + 4 * ldc + 0); Fma.MultiplyAdd(vb, Vector256.Load(c + 4 * ldc + 8), c4_1).Store(c + 4 * ldc + 8);
            Fma.MultiplyAdd(vb, Vector256.Load(c + 5 * ldc + 0), c5_0).Store(c + 5 * ldc + 0); Fma.MultiplyAdd(vb, Vector256.Load(c + 5 * ldc + 8), c5_1).Store(c + 5 * ldc + 8);
        }
    }

    /// <summary>The portable tile for CPUs without AVX2 + FMA: 4 x 4 scalars.</summary>
    internal static void ScalarKernel4x4(int kc, float* a, float* b, float* c, nint ldc, float beta)
    {
        float* acc = stackalloc float[16];
        for (int i = 0; i < 16; i++) acc[i] = 0f;
        for (int p = 0; p < kc; p++)
        {
            for (int r = 0; r < 4; r++)
                for (int j = 0; j < 4; j++)
                    acc[r * 4 + j] += a[r] * b[j];
            a += 4;
            b += 4;
        }
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 4; j++)
                c[r * ldc + j] = beta == 0f ? acc[r * 4 + j] : acc[r * 4 + j] + beta * c[r * ldc + j];
    }
}
