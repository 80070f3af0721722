using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ManagedTensor.Cpu;

/// <summary>
/// The two passes a norm fused with SiLU adds to the plain norm's (<see cref="CpuBatchNorm"/> with silu on; the op is
/// Ops/BatchNormSiluOps.cs). With u = x * scale + shift the norm's output, s = sigmoid(u) = 1 / (1 + exp(-u)):
///   forward   z = silu(u) = u s                       (u never reaches memory)
///   backward  g = dz * s (1 + u (1 - s))             (d/du silu(u), u recomputed from x: one multiply-add)
/// The backward pass writes g (the gradient at the norm's output) into dx's own span, where the norm's second pass
/// reads it back from cache, and returns the norm's two sums over g in the same pass.
/// Float32 runs 8 lanes with the inlined <see cref="VectorExp"/>, sums in vector lanes widened to double every
/// <see cref="Block"/> elements as <see cref="NormSums"/> does; float64 (gradient checks, fixtures) runs a scalar loop.
/// </summary>
internal static class NormSilu
{
    private const int Block = 1024;

    /// <summary>z = silu(x * scale + shift).</summary>
    public static void AffineSilu<T>(ReadOnlySpan<T> x, T scale, T shift, Span<T> z) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
        {
            AffineSiluFloat(AsFloat(x), Unsafe.As<T, float>(ref scale), Unsafe.As<T, float>(ref shift), AsFloat(z));
            return;
        }
        for (int i = 0; i < x.Length; i++)
        {
            T u = x[i] * scale + shift;
            z[i] = u / (T.One + T.Exp(-u));
        }
    }

    /// <summary>g = dz * silu'(x * scale + shift), written to <paramref name="g"/>; returns (sum g, sum g (x - mu)).</summary>
    public static (double SumG, double SumGx) GradientSums<T>(ReadOnlySpan<T> dz, ReadOnlySpan<T> x, T scale, T shift, T mu, Span<T> g)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
            return GradientSumsFloat(AsFloat(dz), AsFloat(x), Unsafe.As<T, float>(ref scale), Unsafe.As<T, float>(ref shift), Unsafe.As<T, float>(ref mu), AsFloat(g));
        double sumG = 0, sumGx = 0;
        for (int i = 0; i < x.Length; i++)
        {
            T u = x[i] * scale + shift, s = T.One / (T.One + T.Exp(-u));
            T gi = dz[i] * s * (T.One + u * (T.One - s));
            g[i] = gi;
            sumG += double.CreateTruncating(gi);
            sumGx += double.CreateTruncating(gi * (x[i] - mu));
        }
        return (sumG, sumGx);
    }

    private static void AffineSiluFloat(ReadOnlySpan<float> x, float scale, float shift, Span<float> z)
    {
        int i = 0, w = Vector256<float>.Count;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float xr = ref MemoryMarshal.GetReference(x);
            ref float zr = ref MemoryMarshal.GetReference(z);
            Vector256<float> vs = Vector256.Create(scale), vb = Vector256.Create(shift);
            for (; i <= x.Length - w; i += w)
            {
                var u = Vector256.LoadUnsafe(ref xr, (nuint)i) * vs + vb;
                (u / (Vector256<float>.One + VectorExp.Exp(-u))).StoreUnsafe(ref zr, (nuint)i);
            }
        }
        for (; i < x.Length; i++)
        {
            float u = x[i] * scale + shift;
            z[i] = u / (1 + MathF.Exp(-u));
        }
    }

    private static (double, double) GradientSumsFloat(ReadOnlySpan<float> dz, ReadOnlySpan<float> x, float scale, float shift, float mu, Span<float> g)
    {
        double sumG = 0, sumGx = 0;
        int i = 0, n = x.Length, w = Vector256<float>.Count;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float dr = ref MemoryMarshal.GetReference(dz);
            ref float xr = ref MemoryMarshal.GetReference(x);
            ref float gr = ref MemoryMarshal.GetReference(g);
            Vector256<float> vs = Vector256.Create(scale), vb = Vector256.Create(shift), m = Vector256.Create(mu), one = Vector256<float>.One;
            while (i <= n - w)
            {
                Vector256<float> accG = Vector256<float>.Zero, accGx = Vector256<float>.Zero;
                for (int end = Math.Min(n - w, i + Block); i <= end; i += w)
                {
                    var xv = Vector256.LoadUnsafe(ref xr, (nuint)i);
                    var u = xv * vs + vb;
                    var s = one / (one + VectorExp.Exp(-u));
                    var gv = Vector256.LoadUnsafe(ref dr, (nuint)i) * s * (one + u * (one - s));
                    gv.StoreUnsafe(ref gr, (nuint)i);
                    accG += gv;
                    accGx += gv * (xv - m);
                }
                sumG += Vector256.Sum(accG);
                sumGx += Vector256.Sum(accGx);
            }
        }
        for (; i < n; i++)
        {
            float u = x[i] * scale + shift, s = 1 / (1 + MathF.Exp(-u));
            float gi = dz[i] * s * (1 + u * (1 - s));
            g[i] = gi;
            sumG += gi;
            sumGx += gi * (x[i] - mu);
        }
        return (sumG, sumGx);
    }

    private static ReadOnlySpan<float> AsFloat<T>(ReadOnlySpan<T> s) where T : unmanaged
        => MemoryMarshal.CreateReadOnlySpan(ref Unsafe.As<T, float>(ref MemoryMarshal.GetReference(s)), s.Length);

    private static Span<float> AsFloat<T>(Span<T> s) where T : unmanaged
        => MemoryMarshal.CreateSpan(ref Unsafe.As<T, float>(ref MemoryMarshal.GetReference(s)), s.Length);
}
