using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// Softmax, layer norm and RMS norm over the last axis, with the backward passes of the norms.
/// Every op sees rows of length C: rows run in parallel (fixed chunks), the inner loops are
/// TensorPrimitives calls (SIMD). dweight/dbias are summed per chunk, then the chunk partials are added in
/// chunk order, so the result does not depend on thread timing.
/// </summary>
internal static class CpuNorm
{
    public static void Softmax(Tensor x, Tensor y, bool log)
    {
        int c = x.Shape[^1], rows = c == 0 ? 0 : x.Numel / c;
        switch (x.DType)
        {
            case DType.F32: Softmax<float>(NnKernels.Buf<float>(x), NnKernels.Buf<float>(y), rows, c, log); break;
            case DType.F64: Softmax<double>(NnKernels.Buf<double>(x), NnKernels.Buf<double>(y), rows, c, log); break;
            default: throw NnKernels.Unsupported(log ? "LogSoftmax" : "Softmax", x);
        }
    }

    /// <summary>
    /// softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m) with m = max_j x_j, so no exp overflows;
    /// log-softmax = x_i - m - log(sum_j exp(x_j - m)).
    /// </summary>
    private static void Softmax<T>((T[] A, int O) x, (T[] A, int O) y, int rows, int c, bool log)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float) && SoftmaxShortRows.Handles(c))
        {
            var (xf, yf) = ((float[])(object)x.A, (float[])(object)y.A);
            NnKernels.For(rows, 4L * c, (_, r0, r1) => SoftmaxShortRows.Run(xf, x.O, yf, y.O, c, r0, r1, log));
            return;
        }
        NnKernels.For(rows, 4L * c, (_, r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                var xr = new ReadOnlySpan<T>(x.A, x.O + r * c, c); // (C)
                var yr = new Span<T>(y.A, y.O + r * c, c);          // (C)
                T max = TensorPrimitives.Max(xr);
                TensorPrimitives.Subtract(xr, max, yr);
                TensorPrimitives.Exp(yr, yr);
                T sum = TensorPrimitives.Sum<T>(yr);
                if (log) TensorPrimitives.Subtract(xr, max + T.Log(sum), yr);
                else TensorPrimitives.Multiply(yr, T.One / sum, yr);
            }
        });
    }

    public static void LayerNorm(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor rstd, NormAttrs a)
    {
        NnKernels.CheckSameDType("LayerNorm", x, w, b);
        switch (x.DType)
        {
            case DType.F32: LayerNorm<float>(x, w, b, y, mean, rstd, (float)a.Eps); break;
            case DType.F64: LayerNorm<double>(x, w, b, y, mean, rstd, a.Eps); break;
            default: throw NnKernels.Unsupported("LayerNorm", x);
        }
    }

    /// <summary>y = (x - mean) * rstd * w + b per row, rstd = 1 / sqrt(var + eps), var biased (divides by C).</summary>
    private static void LayerNorm<T>(Tensor xt, Tensor wt, Tensor bt, Tensor yt, Tensor meant, Tensor rstdt, T eps)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int c = xt.Shape[^1], rows = c == 0 ? 0 : xt.Numel / c; // C = 0: nothing to normalize
        var x = NnKernels.Buf<T>(xt);
        var y = NnKernels.Buf<T>(yt);
        var mean = NnKernels.Buf<T>(meant);
        var rstd = NnKernels.Buf<T>(rstdt);
        T[]? w = wt.Numel > 0 ? wt.ElementSpan<T>().ToArray() : null; // (C)
        T[]? b = bt.Numel > 0 ? bt.ElementSpan<T>().ToArray() : null; // (C)
        T n = T.CreateTruncating(c);
        bool fused = typeof(T) == typeof(float) && LayerNormRows.Fits(c); // float rows in fused SIMD passes
        NnKernels.For(rows, 5L * c, (_, r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                var xr = new ReadOnlySpan<T>(x.Data, x.Offset + r * c, c); // (C)
                var yr = new Span<T>(y.Data, y.Offset + r * c, c);          // (C)
                if (fused)
                {
                    var (fm, frs) = LayerNormRows.Forward(F(xr), F(w), F(b), F(yr), float.CreateTruncating(eps));
                    mean.Data[mean.Offset + r] = T.CreateTruncating(fm);
                    rstd.Data[rstd.Offset + r] = T.CreateTruncating(frs);
                    continue;
                }
                T m = TensorPrimitives.Sum(xr) / n;
                TensorPrimitives.Subtract(xr, m, yr);                        // centred x, kept in y
                T rs = T.One / T.Sqrt(TensorPrimitives.SumOfSquares<T>(yr) / n + eps);
                TensorPrimitives.Multiply(yr, rs, yr);                       // norm
                if (w is not null) TensorPrimitives.Multiply(yr, w, yr);
                if (b is not null) TensorPrimitives.Add(yr, b, yr);
                mean.Data[mean.Offset + r] = m;
                rstd.Data[rstd.Offset + r] = rs;
            }
        });
    }

    public static void LayerNormBackward(Tensor dy, Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dx, Tensor dw, Tensor db)
    {
        NnKernels.CheckSameDType("LayerNormBackward", x, dy, w, mean, rstd);
        switch (x.DType)
        {
            case DType.F32: NormBackward<float>(dy, x, w, mean, rstd, dx, dw, db); break;
            case DType.F64: NormBackward<double>(dy, x, w, mean, rstd, dx, dw, db); break;
            default: throw NnKernels.Unsupported("LayerNormBackward", x);
        }
    }

    public static void RmsNorm(Tensor x, Tensor w, Tensor y, Tensor rstd, NormAttrs a)
    {
        NnKernels.CheckSameDType("RmsNorm", x, w);
        switch (x.DType)
        {
            case DType.F32: RmsNorm<float>(x, w, y, rstd, (float)a.Eps); break;
            case DType.F64: RmsNorm<double>(x, w, y, rstd, a.Eps); break;
            default: throw NnKernels.Unsupported("RmsNorm", x);
        }
    }

    /// <summary>y = x * rstd * w per row, rstd = 1 / sqrt(mean(x^2) + eps).</summary>
    private static void RmsNorm<T>(Tensor xt, Tensor wt, Tensor yt, Tensor rstdt, T eps)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int c = xt.Shape[^1], rows = c == 0 ? 0 : xt.Numel / c; // C = 0: nothing to normalize
        var x = NnKernels.Buf<T>(xt);
        var y = NnKernels.Buf<T>(yt);
        var rstd = NnKernels.Buf<T>(rstdt);
        T[]? w = wt.Numel > 0 ? wt.ElementSpan<T>().ToArray() : null; // (C)
        T n = T.CreateTruncating(c);
        NnKernels.For(rows, 3L * c, (_, r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                var xr = new ReadOnlySpan<T>(x.Data, x.Offset + r * c, c); // (C)
                var yr = new Span<T>(y.Data, y.Offset + r * c, c);          // (C)
                T rs = T.One / T.Sqrt(TensorPrimitives.SumOfSquares(xr) / n + eps);
                TensorPrimitives.Multiply(xr, rs, yr);
                if (w is not null) TensorPrimitives.Multiply(yr, w, yr);
                rstd.Data[rstd.Offset + r] = rs;
            }
        });
    }

    public static void RmsNormBackward(Tensor dy, Tensor x, Tensor w, Tensor rstd, Tensor dx, Tensor dw)
    {
        NnKernels.CheckSameDType("RmsNormBackward", x, dy, w, rstd);
        switch (x.DType)
        {
            case DType.F32: NormBackward<float>(dy, x, w, null, rstd, dx, dw, null); break;
            case DType.F64: NormBackward<double>(dy, x, w, null, rstd, dx, dw, null); break;
            default: throw NnKernels.Unsupported("RmsNormBackward", x);
        }
    }

    /// <summary>
    /// Backward of layer norm (mean given) and RMS norm (mean null, i.e. zero), as llm.c's layernorm_backward.
    /// With norm = (x - mean) * rstd and dnorm = dy * w (dy when there is no weight):
    ///   dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))   (RMS norm drops the mean(dnorm) term,
    ///        since its output does not subtract the mean);
    ///   dw = sum over rows of dy * norm;  db = sum over rows of dy.
    /// dw/db are written only when they are non-empty outputs.
    /// </summary>
    private static void NormBackward<T>(Tensor dyt, Tensor xt, Tensor wt, Tensor? meant, Tensor rstdt, Tensor dxt, Tensor dwt, Tensor? dbt)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int c = xt.Shape[^1], rows = c == 0 ? 0 : xt.Numel / c; // C = 0: nothing to normalize
        var dy = NnKernels.Buf<T>(dyt);
        var x = NnKernels.Buf<T>(xt);
        var dx = NnKernels.Buf<T>(dxt);
        var rstd = NnKernels.Buf<T>(rstdt);
        (T[] Data, int Offset)? mean = meant is null ? null : NnKernels.Buf<T>(meant);
        T[]? w = wt.Numel > 0 ? wt.ElementSpan<T>().ToArray() : null; // (C)
        bool wantDw = dwt.Numel > 0, wantDb = dbt is not null && dbt.Numel > 0;
        T n = T.CreateTruncating(c);

        int chunks = NnKernels.ChunkCount(rows, 10L * c);
        using var dwPart = new Scratch<T>(wantDw ? chunks * c : 0); // (chunks, C)
        using var dbPart = new Scratch<T>(wantDb ? chunks * c : 0); // (chunks, C)
        dwPart.Clear();
        dbPart.Clear();
        var dwParts = dwPart.Array;
        var dbParts = dbPart.Array;
        bool fused = typeof(T) == typeof(float) && LayerNormRows.Fits(c); // float rows in fused SIMD passes
        NnKernels.ForChunks(chunks, rows, (chunk, r0, r1) =>
        {
            if (fused)
            {
                var dwRow = wantDw ? F(new Span<T>(dwParts, chunk * c, c)) : default;
                var dbRow = wantDb ? F(new Span<T>(dbParts, chunk * c, c)) : default;
                for (int r = r0; r < r1; r++)
                {
                    float m = mean is { } mf ? float.CreateTruncating(mf.Data[mf.Offset + r]) : 0f;
                    LayerNormRows.Backward(F(new ReadOnlySpan<T>(x.Data, x.Offset + r * c, c)), F(new ReadOnlySpan<T>(dy.Data, dy.Offset + r * c, c)), F(w),
                        m, float.CreateTruncating(rstd.Data[rstd.Offset + r]), mean is not null, F(new Span<T>(dx.Data, dx.Offset + r * c, c)), dwRow, dbRow);
                }
                return;
            }
            using var normBuf = new Scratch<T>(c);
            using var dnormScratch = new Scratch<T>(w is null ? 0 : c);
            var norm = normBuf.Span;                                       // (C)
            var dnormBuf = dnormScratch.Span;                              // (C), empty without a weight
            var dwAcc = wantDw ? new Span<T>(dwParts, chunk * c, c) : default;
            var dbAcc = wantDb ? new Span<T>(dbParts, chunk * c, c) : default;
            for (int r = r0; r < r1; r++)
            {
                var xr = new ReadOnlySpan<T>(x.Data, x.Offset + r * c, c);   // (C)
                var dyr = new ReadOnlySpan<T>(dy.Data, dy.Offset + r * c, c); // (C)
                var dxr = new Span<T>(dx.Data, dx.Offset + r * c, c);         // (C)
                T rs = rstd.Data[rstd.Offset + r];
                T m = mean is { } mb ? mb.Data[mb.Offset + r] : T.Zero;
                TensorPrimitives.Subtract(xr, m, norm);
                TensorPrimitives.Multiply(norm, rs, norm);
                ReadOnlySpan<T> dnorm = dyr;
                if (w is not null)
                {
                    TensorPrimitives.Multiply(dyr, w, dnormBuf);
                    dnorm = dnormBuf;
                }
                T dnormMean = mean is null ? T.Zero : TensorPrimitives.Sum(dnorm) / n;
                T dnormNormMean = TensorPrimitives.Dot(dnorm, norm) / n;
                TensorPrimitives.MultiplyAdd(norm, -dnormNormMean, dnorm, dxr); // dnorm - norm * mean(dnorm * norm)
                TensorPrimitives.Subtract(dxr, dnormMean, dxr);
                TensorPrimitives.Multiply(dxr, rs, dxr);
                if (wantDw) TensorPrimitives.MultiplyAdd(dyr, norm, dwAcc, dwAcc);
                if (wantDb) TensorPrimitives.Add(dbAcc, dyr, dbAcc);
            }
        });
        if (wantDw) SumChunks(dwParts, chunks, dwt.ElementSpan<T>());
        if (wantDb) SumChunks(dbParts, chunks, dbt!.ElementSpan<T>());
    }

    /// <summary>A float row as float (the caller checked typeof(T) == typeof(float)); a null array is empty.</summary>
    private static ReadOnlySpan<float> F<T>(ReadOnlySpan<T> s) where T : unmanaged => MemoryMarshal.Cast<T, float>(s);

    private static ReadOnlySpan<float> F<T>(T[]? a) where T : unmanaged => a is null ? default : MemoryMarshal.Cast<T, float>(a.AsSpan());

    private static Span<float> F<T>(Span<T> s) where T : unmanaged => MemoryMarshal.Cast<T, float>(s);

    /// <summary>dst = sum over chunks of parts[chunk] (chunk order, so deterministic).</summary>
    private static void SumChunks<T>(T[] parts, int chunks, Span<T> dst) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int c = dst.Length;
        parts.AsSpan(0, c).CopyTo(dst);
        for (int k = 1; k < chunks; k++) TensorPrimitives.Add(dst, parts.AsSpan(k * c, c), dst);
    }
}
