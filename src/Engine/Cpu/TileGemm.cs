using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedTensor.Cpu;

/// <summary>
/// C += A B for the small tiles of attention (a 32 x 64 score tile, a 64 x D key tile), where the
/// packing of the big SGEMM costs more than it saves. A is read one element at a time (broadcast), so
/// any strides work, and a transposed operand (P^T, dS^T) is only a change of strides. B and C are
/// row-major; their rows are streamed as SIMD vectors. A register tile is 4 rows x 2 vectors
/// (8 accumulators + 2 loads + 1 broadcast fit the 16 AVX2 registers); edges fall back to 1 row,
/// 1 vector, then scalars. Compiled fully optimized at once (AggressiveOptimization): a step calls these
/// a few dozen times, too few for tiered compilation to leave its unoptimized first tier in time.
/// </summary>
internal static unsafe class TileGemm
{
    /// <summary>
    /// C[r, c] += sum_p A[r, p] B[p, c] for r &lt; m, c &lt; n, p &lt; k, where A[r, p] = a[r * aRow + p * aCol],
    /// B[p, c] = b[p * ldb + c], C[r, c] = c[r * ldc + c].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MulAdd<T>(int m, int n, int k, T* a, int aRow, int aCol, T* b, int ldb, T* c, int ldc)
        where T : unmanaged, INumber<T>
    {
        if (typeof(T) == typeof(float) && Vector512.IsHardwareAccelerated && n >= 32)
        {
            // Float on AVX-512: the columns in runs of 32 with 512-bit vectors (twice the work per
            // instruction of Vector<T>, which stays 256 bits wide), the rest below.
            int wide = n / 32 * 32;
            MulAdd512(m, wide, k, (float*)a, aRow, aCol, (float*)b, ldb, (float*)c, ldc);
            if (wide == n) return;
            n -= wide;
            b += wide;
            c += wide;
        }
        int r = 0;
        for (; r + 4 <= m; r += 4) Rows4(n, k, a + (long)r * aRow, aRow, aCol, b, ldb, c + (long)r * ldc, ldc);
        for (; r < m; r++) Row1(n, k, a + (long)r * aRow, aCol, b, ldb, c + (long)r * ldc);
    }

    /// <summary>
    /// <see cref="MulAdd{T}"/> for float with n a multiple of 32: the same 4 rows x 2 vectors register tile
    /// in zmm registers (32 columns per pass), then single rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MulAdd512(int m, int n, int k, float* a, int aRow, int aCol, float* b, int ldb, float* c, int ldc)
    {
        int r = 0;
        for (; r + 4 <= m; r += 4)
        {
            float* a0 = a + (long)r * aRow, a1 = a0 + aRow, a2 = a1 + aRow, a3 = a2 + aRow;
            float* c0 = c + (long)r * ldc, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
            for (int j = 0; j < n; j += 32)
            {
                Vector512<float> x00 = Vector512.Load(c0 + j), x01 = Vector512.Load(c0 + j + 16);
                Vector512<float> x10 = Vector512.Load(c1 + j), x11 = Vector512.Load(c1 + j + 16);
                Vector512<float> x20 = Vector512.Load(c2 + j), x21 = Vector512.Load(c2 + j + 16);
                Vector512<float> x30 = Vector512.Load(c3 + j), x31 = Vector512.Load(c3 + j + 16);
                float* bp = b + j;
                for (int p = 0; p < k; p++, bp += ldb)
                {
                    Vector512<float> b0 = Vector512.Load(bp), b1 = Vector512.Load(bp + 16);
                    long ap = (long)p * aCol;
                    var v = Vector512.Create(a0[ap]);
                    x00 = Vector512.FusedMultiplyAdd(v, b0, x00); x01 = Vector512.FusedMultiplyAdd(v, b1, x01);
                    v = Vector512.Create(a1[ap]);
                    x10 = Vector512.FusedMultiplyAdd(v, b0, x10); x11 = Vector512.FusedMultiplyAdd(v, b1, x11);
                    v = Vector512.Create(a2[ap]);
                    x20 = Vector512.FusedMultiplyAdd(v, b0, x20); x21 = Vector512.FusedMultiplyAdd(v, b1, x21);
                    v = Vector512.Create(a3[ap]);
                    x30 = Vector512.FusedMultiplyAdd(v, b0, x30); x31 = Vector512.FusedMultiplyAdd(v, b1, x31);
                }
                x00.Store(c0 + j); x01.Store(c0 + j + 16);
                x10.Store(c1 + j); x11.Store(c1 + j + 16);
                x20.Store(c2 + j); x21.Store(c2 + j + 16);
                x30.Store(c3 + j); x31.Store(c3 + j + 16);
            }
        }
        for (; r < m; r++)
        {
            float* ar = a + (long)r * aRow, cr = c + (long)r * ldc;
            for (int j = 0; j < n; j += 32)
            {
                Vector512<float> x0 = Vector512.Load(cr + j), x1 = Vector512.Load(cr + j + 16);
                float* bp = b + j;
                for (int p = 0; p < k; p++, bp += ldb)
                {
                    var v = Vector512.Create(ar[(long)p * aCol]);
                    x0 = Vector512.FusedMultiplyAdd(v, Vector512.Load(bp), x0);
                    x1 = Vector512.FusedMultiplyAdd(v, Vector512.Load(bp + 16), x1);
                }
                x0.Store(cr + j); x1.Store(cr + j + 16);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows4<T>(int n, int k, T* a, int aRow, int aCol, T* b, int ldb, T* c, int ldc)
        where T : unmanaged, INumber<T>
    {
        int w = Vector<T>.Count;
        T* a0 = a, a1 = a + aRow, a2 = a + 2 * aRow, a3 = a + 3 * aRow;
        T* c0 = c, c1 = c + ldc, c2 = c + 2 * ldc, c3 = c + 3 * ldc;
        int j = 0;
        for (; j + 2 * w <= n; j += 2 * w)
        {
            Vector<T> x00 = Vector.Load(c0 + j), x01 = Vector.Load(c0 + j + w);
            Vector<T> x10 = Vector.Load(c1 + j), x11 = Vector.Load(c1 + j + w);
            Vector<T> x20 = Vector.Load(c2 + j), x21 = Vector.Load(c2 + j + w);
            Vector<T> x30 = Vector.Load(c3 + j), x31 = Vector.Load(c3 + j + w);
            T* bp = b + j;
            for (int p = 0; p < k; p++, bp += ldb)
            {
                Vector<T> b0 = Vector.Load(bp), b1 = Vector.Load(bp + w);
                long ap = (long)p * aCol;
                var v = new Vector<T>(a0[ap]);
                x00 = Fma(v, b0, x00); x01 = Fma(v, b1, x01);
                v = new Vector<T>(a1[ap]);
                x10 = Fma(v, b0, x10); x11 = Fma(v, b1, x11);
                v = new Vector<T>(a2[ap]);
                x20 = Fma(v, b0, x20); x21 = Fma(v, b1, x21);
                v = new Vector<T>(a3[ap]);
                x30 = Fma(v, b0, x30); x31 = Fma(v, b1, x31);
            }
            x00.Store(c0 + j); x01.Store(c0 + j + w);
            x10.Store(c1 + j); x11.Store(c1 + j + w);
            x20.Store(c2 + j); x21.Store(c2 + j + w);
            x30.Store(c3 + j); x31.Store(c3 + j + w);
        }
        for (; j + w <= n; j += w)
        {
            Vector<T> x0 = Vector.Load(c0 + j), x1 = Vector.Load(c1 + j), x2 = Vector.Load(c2 + j), x3 = Vector.Load(c3 + j);
            T* bp = b + j;
            for (int p = 0; p < k; p++, bp += ldb)
            {
                Vector<T> b0 = Vector.Load(bp);
                long ap = (long)p * aCol;
                x0 = Fma(new Vector<T>(a0[ap]), b0, x0);
                x1 = Fma(new Vector<T>(a1[ap]), b0, x1);
                x2 = Fma(new Vector<T>(a2[ap]), b0, x2);
                x3 = Fma(new Vector<T>(a3[ap]), b0, x3);
            }
            x0.Store(c0 + j); x1.Store(c1 + j); x2.Store(c2 + j); x3.Store(c3 + j);
        }
        for (; j < n; j++)
        {
            T s0 = c0[j], s1 = c1[j], s2 = c2[j], s3 = c3[j];
            T* bp = b + j;
            for (int p = 0; p < k; p++, bp += ldb)
            {
                long ap = (long)p * aCol;
                T bv = *bp;
                s0 += a0[ap] * bv; s1 += a1[ap] * bv; s2 += a2[ap] * bv; s3 += a3[ap] * bv;
            }
            c0[j] = s0; c1[j] = s1; c2[j] = s2; c3[j] = s3;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Row1<T>(int n, int k, T* a, int aCol, T* b, int ldb, T* c)
        where T : unmanaged, INumber<T>
    {
        int w = Vector<T>.Count;
        int j = 0;
        for (; j + 2 * w <= n; j += 2 * w)
        {
            Vector<T> x0 = Vector.Load(c + j), x1 = Vector.Load(c + j + w);
            T* bp = b + j;
            for (int p = 0; p < k; p++, bp += ldb)
            {
                var v = new Vector<T>(a[(long)p * aCol]);
                x0 = Fma(v, Vector.Load(bp), x0);
                x1 = Fma(v, Vector.Load(bp + w), x1);
            }
            x0.Store(c + j); x1.Store(c + j + w);
        }
        for (; j + w <= n; j += w)
        {
            Vector<T> x0 = Vector.Load(c + j);
            T* bp = b + j;
            for (int p = 0; p < k; p++, bp += ldb) x0 = Fma(new Vector<T>(a[(long)p * aCol]), Vector.Load(bp), x0);
            x0.Store(c + j);
        }
        for (; j < n; j++)
        {
            T s = c[j];
            T* bp = b + j;
            for (int p = 0; p < k; p++, bp += ldb) s += a[(long)p * aCol] * *bp;
            c[j] = s;
        }
    }

    /// <summary>x y + acc, fused where the hardware has FMA (the JIT keeps one branch per T).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<T> Fma<T>(Vector<T> x, Vector<T> y, Vector<T> acc) where T : unmanaged, INumber<T>
    {
        if (typeof(T) == typeof(float))
            return Vector.MultiplyAddEstimate(x.As<T, float>(), y.As<T, float>(), acc.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double))
            return Vector.MultiplyAddEstimate(x.As<T, double>(), y.As<T, double>(), acc.As<T, double>()).As<double, T>();
        return x * y + acc;
    }
}
