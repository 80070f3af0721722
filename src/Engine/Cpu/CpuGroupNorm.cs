using System.Numerics;

namespace ManagedTensor.Cpu;

/// <summary>
/// Group norm forward (Ops/GroupNormOps.cs): the (sample, group) pairs run in parallel; each group's M = C/G * S values
/// are contiguous, so its mean and variance are two passes in double over one span (the second sums (x - mean)^2,
/// which does not cancel as E[x^2] - E[x]^2 would), then one pass per channel writes y = x * scale_c + shift_c.
/// </summary>
internal static class CpuGroupNorm
{
    public static void Forward(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor invstd, GroupNormAttrs a)
    {
        NnKernels.CheckSameDType("GroupNorm", x, y, mean, invstd);
        if (x.DType == DType.F32) Forward<float>(x, w, b, y, mean, invstd, a);
        else Forward<double>(x, w, b, y, mean, invstd, a);
    }

    private static void Forward<T>(Tensor xt, Tensor wt, Tensor bt, Tensor yt, Tensor meant, Tensor invstdt, GroupNormAttrs a)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = xt.Shape[0], c = xt.Shape[1], g = a.Groups, cg = c / g;
        int s = c == 0 ? 0 : xt.Numel / (n * c);   // spatial size per channel
        int m = cg * s;                             // values per group
        (T[] A, int O) x = NnKernels.Buf<T>(xt);
        (T[] A, int O) y = NnKernels.Buf<T>(yt);
        (T[] A, int O) mean = NnKernels.Buf<T>(meant);
        (T[] A, int O) invstd = NnKernels.Buf<T>(invstdt);
        (T[]? A, int O) w = wt.Numel > 0 ? NnKernels.Buf<T>(wt) : default;
        (T[]? A, int O) b = bt.Numel > 0 ? NnKernels.Buf<T>(bt) : default;
        NnKernels.For(n * g, 3L * m, (_, i0, i1) =>
        {
            for (int ng = i0; ng < i1; ng++)
            {
                int start = ng * m;                          // (sample, group) ng's values: [start, start + m)
                double sum = 0;
                for (int k = 0; k < m; k++) sum += double.CreateTruncating(x.A[x.O + start + k]);
                double mu = sum / m, sq = 0;
                for (int k = 0; k < m; k++)
                {
                    double d = double.CreateTruncating(x.A[x.O + start + k]) - mu;
                    sq += d * d;
                }
                double rstd = 1 / Math.Sqrt(sq / m + a.Eps);
                int group = ng % g;
                for (int j = 0; j < cg; j++)
                {
                    int ch = group * cg + j;
                    double scale = rstd * (w.A is null ? 1 : double.CreateTruncating(w.A[w.O + ch]));
                    double shift = (b.A is null ? 0 : double.CreateTruncating(b.A[b.O + ch])) - mu * scale;
                    for (int k = 0, o = start + j * s; k < s; k++)
                        y.A[y.O + o + k] = T.CreateTruncating(double.CreateTruncating(x.A[x.O + o + k]) * scale + shift);
                }
                mean.A[mean.O + ng] = T.CreateTruncating(mu);
                invstd.A[invstd.O + ng] = T.CreateTruncating(rstd);
            }
        });
    }
}
