using System.Numerics;

namespace ManagedTensor.Cpu;

/// <summary>
/// Batch norm forward with batch statistics (Ops/BatchNormOps.cs): channels run in parallel; each channel's
/// mean and variance are two passes in double over its N planes of H*W (the second pass sums (x - mean)^2,
/// which does not cancel as E[x^2] - E[x]^2 would), then one pass writes y.
/// </summary>
internal static class CpuBatchNorm
{
    public static void Forward(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor invstd, double eps)
    {
        NnKernels.CheckSameDType("BatchNorm2d", x, y, mean, invstd);
        if (x.DType == DType.F32) Forward<float>(x, w, b, y, mean, invstd, eps);
        else Forward<double>(x, w, b, y, mean, invstd, eps);
    }

    private static void Forward<T>(Tensor xt, Tensor wt, Tensor bt, Tensor yt, Tensor meant, Tensor invstdt, double eps)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = xt.Shape[0], c = xt.Shape[1], hw = xt.Shape[2] * xt.Shape[3];
        (T[] A, int O) x = NnKernels.Buf<T>(xt);
        (T[] A, int O) y = NnKernels.Buf<T>(yt);
        (T[] A, int O) mean = NnKernels.Buf<T>(meant);
        (T[] A, int O) invstd = NnKernels.Buf<T>(invstdt);
        (T[]? A, int O) w = wt.Numel > 0 ? NnKernels.Buf<T>(wt) : default;
        (T[]? A, int O) b = bt.Numel > 0 ? NnKernels.Buf<T>(bt) : default;
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
                double scale = rstd * (w.A is null ? 1 : double.CreateTruncating(w.A[w.O + ch]));
                double shift = (b.A is null ? 0 : double.CreateTruncating(b.A[b.O + ch])) - mu * scale;
                for (int i = 0; i < n; i++)
                    for (int k = 0, o = (i * c + ch) * hw; k < hw; k++)
                        y.A[y.O + o + k] = T.CreateTruncating(double.CreateTruncating(x.A[x.O + o + k]) * scale + shift);
                mean.A[mean.O + ch] = T.CreateTruncating(mu);
                invstd.A[invstd.O + ch] = T.CreateTruncating(rstd);
            }
        });
    }
}
