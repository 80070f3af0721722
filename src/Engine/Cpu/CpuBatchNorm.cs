using System.Numerics;

namespace ManagedTensor.Cpu;

/// <summary>
/// Batch norm forward with batch statistics (Ops/BatchNormOps.cs): channels run in parallel; each channel's
/// mean and variance are two SIMD passes over its N planes of H*W (<see cref="NormSums"/>: vector lanes, partials
/// added in double; the second pass sums (x - mean)^2, which does not cancel as E[x^2] - E[x]^2 would), then one
/// pass writes y = x * scale + shift.
/// Backward, per channel with xhat = (x - mean) * invstd and M = N*H*W: one pass sums dbias = sum dy and
/// dweight = sum dy * xhat, a second writes dx = weight * invstd / M * (M dy - dbias - xhat * dweight).
/// A channel of (2, 64, 80, 80) is 51 KB, so the second and third passes read it from cache.
/// With silu on (the op BatchNormSilu2d, Ops/BatchNormSiluOps.cs) the output pass writes z = silu(x * scale + shift)
/// instead of y, and the backward's first pass turns dz into the gradient at y, g = dz silu'(y), recomputing y from x,
/// and writes g into dx, where the second pass reads it back from cache (<see cref="NormSilu"/>): the conv block
/// conv -> batch norm -> SiLU costs the norm's passes alone, and y is never stored.
/// </summary>
internal static class CpuBatchNorm
{
    public static void Forward(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor invstd, double eps, bool silu = false)
    {
        NnKernels.CheckSameDType(silu ? "BatchNormSilu2d" : "BatchNorm2d", x, y, mean, invstd);
        if (x.DType == DType.F32) Forward(x, new NormBuffers<float>(x, w, b, y, mean, invstd), eps, silu);
        else Forward(x, new NormBuffers<double>(x, w, b, y, mean, invstd), eps, silu);
    }

    private static void Forward<T>(Tensor xt, NormBuffers<T> buf, double eps, bool silu) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = xt.Shape[0], c = xt.Shape[1], hw = xt.Shape[2] * xt.Shape[3];
        var x = buf.X;
        double count = (double)n * hw;
        NnKernels.For(c, 3L * n * hw, (_, c0, c1) =>
        {
            for (int ch = c0; ch < c1; ch++)
            {
                double sum = 0;
                for (int i = 0; i < n; i++) sum += NormSums.Sum<T>(x.A.AsSpan(x.O + (i * c + ch) * hw, hw));
                double mu = sum / count, sq = 0;
                for (int i = 0; i < n; i++) sq += NormSums.SquaredDeviations<T>(x.A.AsSpan(x.O + (i * c + ch) * hw, hw), T.CreateTruncating(mu));
                double rstd = 1 / Math.Sqrt(sq / count + eps);
                var (scale, shift) = buf.Affine(ch, mu, rstd);
                for (int i = 0; i < n; i++)
                {
                    if (silu) buf.ApplySilu((i * c + ch) * hw, hw, scale, shift);
                    else buf.Apply((i * c + ch) * hw, hw, scale, shift);
                }
                buf.SaveStats(ch, mu, rstd);
            }
        });
    }

    /// <summary>
    /// dx, dweight, dbias from dy (<paramref name="silu"/> off) or from dz, the gradient at silu(y) (on: then
    /// <paramref name="b"/>, the optional bias, is needed to recompute y).
    /// </summary>
    public static void Backward(Tensor dy, Tensor x, Tensor w, Tensor mean, Tensor invstd, Tensor dx, Tensor dw, Tensor db, Tensor? b = null, bool silu = false)
    {
        NnKernels.CheckSameDType(silu ? "BatchNormSilu2dBackward" : "BatchNorm2dBackward", dy, x, mean, invstd, dx);
        if (x.DType == DType.F32) Backward<float>(dy, x, w, mean, invstd, dx, dw, db, b, silu);
        else Backward<double>(dy, x, w, mean, invstd, dx, dw, db, b, silu);
    }

    private static void Backward<T>(Tensor dyt, Tensor xt, Tensor wt, Tensor meant, Tensor invstdt, Tensor dxt, Tensor dwt, Tensor dbt, Tensor? bt, bool silu)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = xt.Shape[0], c = xt.Shape[1], hw = xt.Shape[2] * xt.Shape[3];
        (T[] A, int O) dy = NnKernels.Buf<T>(dyt), x = NnKernels.Buf<T>(xt), dx = NnKernels.Buf<T>(dxt);
        (T[] A, int O) mean = NnKernels.Buf<T>(meant), invstd = NnKernels.Buf<T>(invstdt), dw = NnKernels.Buf<T>(dwt), db = NnKernels.Buf<T>(dbt);
        (T[]? A, int O) w = wt.Numel > 0 ? NnKernels.Buf<T>(wt) : default, bias = bt is { Numel: > 0 } ? NnKernels.Buf<T>(bt) : default;
        double count = (double)n * hw;
        NnKernels.For(c, 4L * n * hw, (_, c0, c1) =>
        {
            for (int ch = c0; ch < c1; ch++)
            {
                double rstd = double.CreateTruncating(invstd.A[invstd.O + ch]);
                T muT = mean.A[mean.O + ch];
                double scale = rstd * (w.A is null ? 1 : double.CreateTruncating(w.A[w.O + ch]));
                // with silu: y = x * scale + shift as the forward wrote it, g = dz silu'(y) goes to dx and is read back as dy
                double shift = (bias.A is null ? 0 : double.CreateTruncating(bias.A[bias.O + ch])) - double.CreateTruncating(muT) * scale;
                var g = silu ? dx : dy;
                double sumG = 0, sumGxc = 0;   // sum g, sum g (x - mean)
                for (int i = 0; i < n; i++)
                {
                    int o = (i * c + ch) * hw;
                    var (g1, gx1) = silu
                        ? NormSilu.GradientSums<T>(dy.A.AsSpan(dy.O + o, hw), x.A.AsSpan(x.O + o, hw), T.CreateTruncating(scale), T.CreateTruncating(shift), muT, dx.A.AsSpan(dx.O + o, hw))
                        : NormSums.GradientSums<T>(dy.A.AsSpan(dy.O + o, hw), x.A.AsSpan(x.O + o, hw), muT);
                    sumG += g1;
                    sumGxc += gx1;
                }
                double sumGx = sumGxc * rstd;  // dweight = sum g xhat
                // dx = scale * (g - dbias / M - xhat * dweight / M), scale = weight * invstd, xhat = (x - mean) * invstd:
                //    = scale * g + (-scale * invstd * dweight / M) * (x - mean) + (-scale * dbias / M)
                T a = T.CreateTruncating(scale), b = T.CreateTruncating(-scale * rstd * sumGx / count), k = T.CreateTruncating(-scale * sumG / count);
                for (int i = 0; i < n; i++)
                {
                    int o = (i * c + ch) * hw;
                    NormSums.InputGradient<T>(g.A.AsSpan(g.O + o, hw), x.A.AsSpan(x.O + o, hw), muT, a, b, k, dx.A.AsSpan(dx.O + o, hw));
                }
                dw.A[dw.O + ch] = T.CreateTruncating(sumGx);
                db.A[db.O + ch] = T.CreateTruncating(sumG);
            }
        });
    }
}
