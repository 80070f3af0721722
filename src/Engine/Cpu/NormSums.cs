using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ManagedTensor.Cpu;

/// <summary>
/// The SIMD passes the batch and group norm kernels are made of (<see cref="CpuBatchNorm"/>, <see cref="CpuGroupNorm"/>),
/// for T = float or double. Sums run in T's vector lanes over blocks of <see cref="Block"/> elements and each block's
/// partial is added in double: float lanes then hold at most Block / 8 terms each, so a plane of 100,000 floats sums
/// as accurately as a double loop would (to ~1e-7 relative) at the speed of a float loop.
/// The statistics the callers pass in (mu) are T-rounded; sum (x - mu_T)^2 = sum (x - mu)^2 + M (mu - mu_T)^2, whose
/// second term is below T's rounding of the result.
/// </summary>
internal static class NormSums
{
    /// <summary>Elements summed in vector lanes before the partial is widened to double.</summary>
    private const int Block = 1024;

    /// <summary>sum x.</summary>
    public static double Sum<T>(ReadOnlySpan<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double total = 0;
        int i = 0, n = x.Length, w = Vector256<T>.Count;
        if (Vector256.IsHardwareAccelerated)
        {
            ref T xr = ref MemoryMarshal.GetReference(x);
            while (i <= n - w)
            {
                var acc = Vector256<T>.Zero;
                for (int end = Math.Min(n - w, i + Block); i <= end; i += w) acc += Vector256.LoadUnsafe(ref xr, (nuint)i);
                total += double.CreateTruncating(Vector256.Sum(acc));
            }
        }
        for (; i < n; i++) total += double.CreateTruncating(x[i]);
        return total;
    }

    /// <summary>sum (x - mu)^2.</summary>
    public static double SquaredDeviations<T>(ReadOnlySpan<T> x, T mu) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double total = 0;
        int i = 0, n = x.Length, w = Vector256<T>.Count;
        if (Vector256.IsHardwareAccelerated)
        {
            ref T xr = ref MemoryMarshal.GetReference(x);
            var m = Vector256.Create(mu);
            while (i <= n - w)
            {
                var acc = Vector256<T>.Zero;
                for (int end = Math.Min(n - w, i + Block); i <= end; i += w)
                {
                    var d = Vector256.LoadUnsafe(ref xr, (nuint)i) - m;
                    acc += d * d;
                }
                total += double.CreateTruncating(Vector256.Sum(acc));
            }
        }
        for (; i < n; i++)
        {
            double d = double.CreateTruncating(x[i] - mu);
            total += d * d;
        }
        return total;
    }

    /// <summary>(sum g, sum g (x - mu)): the two sums of a norm's backward, in one pass over g and x.</summary>
    public static (double SumG, double SumGx) GradientSums<T>(ReadOnlySpan<T> g, ReadOnlySpan<T> x, T mu) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double sumG = 0, sumGx = 0;
        int i = 0, n = x.Length, w = Vector256<T>.Count;
        if (Vector256.IsHardwareAccelerated)
        {
            ref T gr = ref MemoryMarshal.GetReference(g);
            ref T xr = ref MemoryMarshal.GetReference(x);
            var m = Vector256.Create(mu);
            while (i <= n - w)
            {
                Vector256<T> accG = Vector256<T>.Zero, accGx = Vector256<T>.Zero;
                for (int end = Math.Min(n - w, i + Block); i <= end; i += w)
                {
                    var gv = Vector256.LoadUnsafe(ref gr, (nuint)i);
                    accG += gv;
                    accGx += gv * (Vector256.LoadUnsafe(ref xr, (nuint)i) - m);
                }
                sumG += double.CreateTruncating(Vector256.Sum(accG));
                sumGx += double.CreateTruncating(Vector256.Sum(accGx));
            }
        }
        for (; i < n; i++)
        {
            sumG += double.CreateTruncating(g[i]);
            sumGx += double.CreateTruncating(g[i] * (x[i] - mu));
        }
        return (sumG, sumGx);
    }

    /// <summary>y = x * scale + shift (a norm's output once its statistics are known).</summary>
    public static void Affine<T>(ReadOnlySpan<T> x, T scale, T shift, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0, n = x.Length, w = Vector256<T>.Count;
        if (Vector256.IsHardwareAccelerated)
        {
            ref T xr = ref MemoryMarshal.GetReference(x);
            ref T yr = ref MemoryMarshal.GetReference(y);
            Vector256<T> s = Vector256.Create(scale), b = Vector256.Create(shift);
            for (; i <= n - w; i += w) (Vector256.LoadUnsafe(ref xr, (nuint)i) * s + b).StoreUnsafe(ref yr, (nuint)i);
        }
        for (; i < n; i++) y[i] = x[i] * scale + shift;
    }

    /// <summary>
    /// dx = a g + b (x - mu) + c: a norm's input gradient, whose per-set coefficients the caller derives from the sums
    /// (x - mu rather than b x + (c - b mu), which would cancel when the mean is large next to the spread).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void InputGradient<T>(ReadOnlySpan<T> g, ReadOnlySpan<T> x, T mu, T a, T b, T c, Span<T> dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0, n = x.Length, w = Vector256<T>.Count;
        if (Vector256.IsHardwareAccelerated)
        {
            ref T gr = ref MemoryMarshal.GetReference(g);
            ref T xr = ref MemoryMarshal.GetReference(x);
            ref T dr = ref MemoryMarshal.GetReference(dx);
            Vector256<T> m = Vector256.Create(mu), va = Vector256.Create(a), vb = Vector256.Create(b), vc = Vector256.Create(c);
            for (; i <= n - w; i += w)
                (Vector256.LoadUnsafe(ref gr, (nuint)i) * va + (Vector256.LoadUnsafe(ref xr, (nuint)i) - m) * vb + vc).StoreUnsafe(ref dr, (nuint)i);
        }
        for (; i < n; i++) dx[i] = g[i] * a + (x[i] - mu) * b + c;
    }
}
