using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ManagedTensor.Cpu;

/// <summary>
/// One row of layer norm (and the backward of layer and RMS norm) in float, fused into two or three SIMD
/// passes over the row, for rows whose length is a multiple of 16 on AVX-512. The general code in
/// <see cref="CpuNorm"/> makes six (forward) and ten (backward) TensorPrimitives calls per row: at
/// nanoGPT's CPU width (C = 128, 8 vectors) each call's setup costs about as much as its arithmetic, and
/// a step runs nine norms of 768 rows each way. The math is CpuNorm's, step for step; only the order in
/// which the sums are added up differs (so results agree to float rounding, not bit for bit).
/// </summary>
internal static class LayerNormRows
{
    /// <summary>Whether rows of length <paramref name="c"/> take these routines.</summary>
    public static bool Fits(int c) => Vector512.IsHardwareAccelerated && c > 0 && c % 16 == 0;

    /// <summary>
    /// y = (x - mean) * rstd * w + b (w, b empty: left out), mean = sum(x) / C, rstd = 1 / sqrt(sum((x - mean)^2) / C + eps).
    /// Returns (mean, rstd).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (float Mean, float Rstd) Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, float eps)
    {
        int c = x.Length;
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        var acc = Vector512<float>.Zero;
        for (int i = 0; i < c; i += 16) acc += Vector512.LoadUnsafe(ref xr, (nuint)i);
        float mean = Vector512.Sum(acc) / c;
        var vm = Vector512.Create(mean);
        acc = Vector512<float>.Zero;
        for (int i = 0; i < c; i += 16)
        {
            var centred = Vector512.LoadUnsafe(ref xr, (nuint)i) - vm;
            acc += centred * centred;
        }
        float rstd = 1 / MathF.Sqrt(Vector512.Sum(acc) / c + eps);
        var vr = Vector512.Create(rstd);
        bool hasW = !w.IsEmpty, hasB = !b.IsEmpty;
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float br = ref MemoryMarshal.GetReference(b);
        for (int i = 0; i < c; i += 16)
        {
            var v = (Vector512.LoadUnsafe(ref xr, (nuint)i) - vm) * vr;
            if (hasW) v *= Vector512.LoadUnsafe(ref wr, (nuint)i);
            if (hasB) v += Vector512.LoadUnsafe(ref br, (nuint)i);
            v.StoreUnsafe(ref yr, (nuint)i);
        }
        return (mean, rstd);
    }

    /// <summary>
    /// The backward of one row (see CpuNorm.NormBackward): with norm = (x - mean) * rstd and dnorm = dy * w,
    ///   dx = rstd * (dnorm - norm * sum(dnorm * norm) / C - sum(dnorm) / C)   (RMS norm: no sum(dnorm) term),
    ///   dwAcc += dy * norm, dbAcc += dy (each skipped when empty).
    /// Pass 1 gathers the two sums and the weight gradients; pass 2 writes dx, recomputing norm and dnorm.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, float mean, float rstd, bool layerNorm,
        Span<float> dx, Span<float> dwAcc, Span<float> dbAcc)
    {
        int c = x.Length;
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float dyr = ref MemoryMarshal.GetReference(dy);
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float dxr = ref MemoryMarshal.GetReference(dx);
        ref float dwr = ref MemoryMarshal.GetReference(dwAcc);
        ref float dbr = ref MemoryMarshal.GetReference(dbAcc);
        bool hasW = !w.IsEmpty, wantDw = !dwAcc.IsEmpty, wantDb = !dbAcc.IsEmpty;
        var vm = Vector512.Create(mean);
        var vr = Vector512.Create(rstd);
        Vector512<float> sumDnorm = default, sumDnormNorm = default;
        for (int i = 0; i < c; i += 16)
        {
            var g = Vector512.LoadUnsafe(ref dyr, (nuint)i);
            var norm = (Vector512.LoadUnsafe(ref xr, (nuint)i) - vm) * vr;
            var dnorm = hasW ? g * Vector512.LoadUnsafe(ref wr, (nuint)i) : g;
            sumDnorm += dnorm;
            sumDnormNorm += dnorm * norm;
            if (wantDw) (Vector512.LoadUnsafe(ref dwr, (nuint)i) + g * norm).StoreUnsafe(ref dwr, (nuint)i);
            if (wantDb) (Vector512.LoadUnsafe(ref dbr, (nuint)i) + g).StoreUnsafe(ref dbr, (nuint)i);
        }
        var dnormMean = Vector512.Create(layerNorm ? Vector512.Sum(sumDnorm) / c : 0f);
        var dnormNormMean = Vector512.Create(Vector512.Sum(sumDnormNorm) / c);
        for (int i = 0; i < c; i += 16)
        {
            var g = Vector512.LoadUnsafe(ref dyr, (nuint)i);
            var norm = (Vector512.LoadUnsafe(ref xr, (nuint)i) - vm) * vr;
            var dnorm = hasW ? g * Vector512.LoadUnsafe(ref wr, (nuint)i) : g;
            ((dnorm - norm * dnormNormMean - dnormMean) * vr).StoreUnsafe(ref dxr, (nuint)i);
        }
    }
}
