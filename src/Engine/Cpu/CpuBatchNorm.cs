using System.Numerics;

namespace ManagedTensor.Cpu;

/// <summary>
/// Batch norm forward with batch statistics (Ops/BatchNormOps.cs): channels run in parallel; each channel's
/// mean and variance are two passes in double over its N planes of H*W (the second pass sums (x - mean)^2,
/// which does not cancel as E[x^2] - E[x]^2 would), then one pass writes y.
/// Backward, per channel with xhat = (x - mean) * invstd and M = N*H*W: one pass sums dbias = sum dy and
/// dweight = sum dy * xhat (in double), a second writes dx = weight * invstd / M * (M dy - dbias - xhat * dweight).
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
                for (int i = 0; i < n; i++)
                    for (int k = 0, o = x.O + (i * c + ch) * hw; k < hw; k++) sum += double.CreateTruncating(x.A[o + k]);
                double mu = sum / count, sq = 0;
                for (int i = 0; i < n; i++)
                    for (int k = 0, o = x.O + (i * c + ch) * hw; k < hw; k++)
                    {
                        double d = double.CreateTruncating(x.A[o + k]) - mu;
                        sq += d * d;
                    }
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
                double mu = double.CreateTruncating(mean.A[mean.O + ch]), rstd = double.CreateTruncating(invstd.A[invstd.O + ch]);
                double sumG = 0, sumGx = 0;
                for (int i = 0; i < n; i++)
                    for (int k = 0, o = (i * c + ch) * hw; k < hw; k++)
                    {
                        double g = double.CreateTruncating(dy.A[dy.O + o + k]);
                        sumG += g;
                        sumGx += g * (double.CreateTruncating(x.A[x.O + o + k]) - mu) * rstd;
                    }
                // dx = scale * (dy - dbias / M - xhat * dweight / M), scale = weight * invstd
                double scale = rstd * (w.A is null ? 1 : double.CreateTruncating(w.A[w.O + ch]));
                double meanG = sumG / count, meanGx = sumGx / count;
                for (int i = 0; i < n; i++)
                    for (int k = 0, o = (i * c + ch) * hw; k < hw; k++)
                    {
                        double xhat = (double.CreateTruncating(x.A[x.O + o + k]) - mu) * rstd;
                        dx.A[dx.O + o + k] = T.CreateTruncating(scale * (double.CreateTruncating(dy.A[dy.O + o + k]) - meanG - xhat * meanGx));
                    }
                dw.A[dw.O + ch] = T.CreateTruncating(sumGx);
                db.A[db.O + ch] = T.CreateTruncating(sumG);
            }
        });
    }
}
