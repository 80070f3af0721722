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
/// </summary>
internal static class CpuBatchNorm
{
    public static void Forward(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor invstd, double eps)
    {
        NnKernels.CheckSameDType("BatchNorm2d", x, y, mean, invstd);
        if (x.DType == DType.F32) Forward(x, new NormBuffers<float>(x, w, b, y, mean, invstd), eps);
        else Forward(x, new NormBuffers<double>(x, w, b, y, mean, invstd), eps);
    }

    private static void Forward<T>(Tensor xt, NormBuffers<T> buf, double eps) where T : unmanaged, IFloatingPointIeee754<T>
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
                for (int i = 0; i < n; i++) buf.Apply((i * c + ch) * hw, hw, scale, shift);
                buf.SaveStats(ch, mu, rstd);
            }
        });
    }

    public static void Backward(Tensor dy, Tensor x, Tensor w, Tensor mean, Tensor invstd, Tensor dx, Tensor dw, Tensor db)
    {
        NnKernels.CheckSameDType("BatchNorm2dBackward", dy, x, mean, invstd, dx);
        if (x.DType == DType.F32) Backward<float>(dy, x, w, mean, invstd, dx, dw, db);
        else Backward<double>(dy, x, w, mean, invstd, dx, dw, db);
    }

    private static void Backward<T>(Tensor dyt, Tensor xt, Tensor wt, Tensor meant, Tensor invstdt, Tensor dxt, Tensor dwt, Tensor dbt)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = xt.Shape[0], c = xt.Shape[1], hw = xt.Shape[2] * xt.Shape[3];
        (T[] A, int O) dy = NnKernels.Buf<T>(dyt), x = NnKernels.Buf<T>(xt), dx = NnKernels.Buf<T>(dxt);
        (T[] A, int O) mean = NnKernels.Buf<T>(meant), invstd = NnKernels.Buf<T>(invstdt), dw = NnKernels.Buf<T>(dwt), db = NnKernels.Buf<T>(dbt);
        (T[]? A, int O) w = wt.Numel > 0 ? NnKernels.Buf<T>(wt) : default;
        double count = (double)n * hw;
        NnKernels.For(c, 4L * n * hw, (_, c0, c1) =>
        {
            for (int ch = c0; ch < c1; ch++)
            {
                double rstd = double.CreateTruncating(invstd.A[invstd.O + ch]);
                T muT = mean.A[mean.O + ch];
                double sumG = 0, sumGxc = 0;   // sum g, sum g (x - mean)
                for (int i = 0; i < n; i++)
                {
                    int o = (i * c + ch) * hw;
                    var (g1, gx1) = NormSums.GradientSums<T>(dy.A.AsSpan(dy.O + o, hw), x.A.AsSpan(x.O + o, hw), muT);
                    sumG += g1;
                    sumGxc += gx1;
                }
                double sumGx = sumGxc * rstd;  // dweight = sum g xhat
                // dx = scale * (dy - dbias / M - xhat * dweight / M), scale = weight * invstd, xhat = (x - mean) * invstd:
                //    = scale * dy + (-scale * invstd * dweight / M) * (x - mean) + (-scale * dbias / M)
                double scale = rstd * (w.A is null ? 1 : double.CreateTruncating(w.A[w.O + ch]));
                T a = T.CreateTruncating(scale), b = T.CreateTruncating(-scale * rstd * sumGx / count), k = T.CreateTruncating(-scale * sumG / count);
                for (int i = 0; i < n; i++)
                {
                    int o = (i * c + ch) * hw;
                    NormSums.InputGradient<T>(dy.A.AsSpan(dy.O + o, hw), x.A.AsSpan(x.O + o, hw), muT, a, b, k, dx.A.AsSpan(dx.O + o, hw));
                }
                dw.A[dw.O + ch] = T.CreateTruncating(sumGx);
                db.A[db.O + ch] = T.CreateTruncating(sumG);
            }
        });
    }
}
