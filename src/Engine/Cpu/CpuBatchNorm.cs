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
}
