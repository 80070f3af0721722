using System.Numerics;

namespace ManagedTensor.Cpu;

/// <summary>
/// Group norm (Ops/GroupNormOps.cs). Forward: the (sample, group) pairs run in parallel; each group's M = C/G * S values
/// are contiguous, so its mean and variance are two SIMD passes over one span (<see cref="NormSums"/>; the second sums
/// (x - mean)^2, which does not cancel as E[x^2] - E[x]^2 would), then one pass per channel writes y = x * scale_c + shift_c.
/// Backward: the groups run in parallel (a group's channels, and so their dweight and dbias, belong to one thread),
/// each over every sample. Per (sample, group), with gy = g * w_c and xhat = (x - mean) * invstd:
///   one pass per channel sums g and g (x - mean) (which also give dbias_c and dweight_c),
///   then dx = invstd / M * (M gy - sum gy - xhat * sum gy xhat) = a_c g + b (x - mean) + k with
///   a_c = invstd w_c, b = -invstd^2 sum(gy xhat) / M, k = -invstd sum(gy) / M.
/// </summary>
internal static class CpuGroupNorm
{
    public static void Forward(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor invstd, GroupNormAttrs a)
    {
        NnKernels.CheckSameDType("GroupNorm", x, y, mean, invstd);
        if (x.DType == DType.F32) Forward(x, new NormBuffers<float>(x, w, b, y, mean, invstd), a);
        else Forward(x, new NormBuffers<double>(x, w, b, y, mean, invstd), a);
    }

    private static void Forward<T>(Tensor xt, NormBuffers<T> buf, GroupNormAttrs a) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = xt.Shape[0], c = xt.Shape[1], g = a.Groups, cg = c / g;
        int s = c == 0 ? 0 : xt.Numel / (n * c);   // spatial size per channel
        int m = cg * s;                             // values per group
        var x = buf.X;
        NnKernels.For(n * g, 3L * m, (_, i0, i1) =>
        {
            for (int ng = i0; ng < i1; ng++)
            {
                var values = x.A.AsSpan(x.O + ng * m, m);   // (sample, group) ng's values
                double mu = NormSums.Sum<T>(values) / m;
                double rstd = 1 / Math.Sqrt(NormSums.SquaredDeviations(values, T.CreateTruncating(mu)) / m + a.Eps);
                int group = ng % g;
                for (int j = 0; j < cg; j++)
                {
                    var (scale, shift) = buf.Affine(group * cg + j, mu, rstd);
                    buf.Apply(ng * m + j * s, s, scale, shift);
                }
                buf.SaveStats(ng, mu, rstd);
            }
        });
    }

    public static void Backward(Tensor dy, Tensor x, Tensor w, Tensor mean, Tensor invstd, Tensor dx, Tensor dw, Tensor db)
    {
        NnKernels.CheckSameDType("GroupNormBackward", dy, x, mean, invstd, dx);
        if (x.DType == DType.F32) Backward<float>(dy, x, w, mean, invstd, dx, dw, db);
        else Backward<double>(dy, x, w, mean, invstd, dx, dw, db);
    }

    private static void Backward<T>(Tensor dyt, Tensor xt, Tensor wt, Tensor meant, Tensor invstdt, Tensor dxt, Tensor dwt, Tensor dbt)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = xt.Shape[0], c = xt.Shape[1], g = meant.Shape[1], cg = c / g;
        int s = c == 0 ? 0 : xt.Numel / (n * c);   // spatial size per channel
        int m = cg * s;                             // values per group
        (T[] A, int O) dy = NnKernels.Buf<T>(dyt), x = NnKernels.Buf<T>(xt), dx = NnKernels.Buf<T>(dxt);
        (T[] A, int O) mean = NnKernels.Buf<T>(meant), invstd = NnKernels.Buf<T>(invstdt), dw = NnKernels.Buf<T>(dwt), db = NnKernels.Buf<T>(dbt);
        (T[]? A, int O) w = wt.Numel > 0 ? NnKernels.Buf<T>(wt) : default;
        NnKernels.For(g, 4L * n * m, (_, g0, g1) =>
        {
            // per channel of the group: sum g and sum g (x - mean) of one sample; dweight and dbias over the samples
            double[] sumG = new double[cg], sumGxc = new double[cg], dwSum = new double[cg], dbSum = new double[cg];
            for (int group = g0; group < g1; group++)
            {
                Array.Clear(dwSum);
                Array.Clear(dbSum);
                for (int i = 0; i < n; i++)
                {
                    int ng = i * g + group, start = ng * m;
                    T muT = mean.A[mean.O + ng];
                    double rstd = double.CreateTruncating(invstd.A[invstd.O + ng]), sumGy = 0, sumGyXhat = 0;
                    for (int j = 0; j < cg; j++)
                    {
                        int o = start + j * s;
                        (sumG[j], sumGxc[j]) = NormSums.GradientSums<T>(dy.A.AsSpan(dy.O + o, s), x.A.AsSpan(x.O + o, s), muT);
                        double wc = w.A is null ? 1 : double.CreateTruncating(w.A[w.O + group * cg + j]);
                        sumGy += wc * sumG[j];
                        sumGyXhat += wc * sumGxc[j] * rstd;
                        dbSum[j] += sumG[j];
                        dwSum[j] += sumGxc[j] * rstd;
                    }
                    T b = T.CreateTruncating(-rstd * rstd * sumGyXhat / m), k = T.CreateTruncating(-rstd * sumGy / m);
                    for (int j = 0; j < cg; j++)
                    {
                        int o = start + j * s;
                        double wc = w.A is null ? 1 : double.CreateTruncating(w.A[w.O + group * cg + j]);
                        NormSums.InputGradient<T>(dy.A.AsSpan(dy.O + o, s), x.A.AsSpan(x.O + o, s), muT, T.CreateTruncating(rstd * wc), b, k, dx.A.AsSpan(dx.O + o, s));
                    }
                }
                for (int j = 0; j < cg; j++)
                {
                    dw.A[dw.O + group * cg + j] = T.CreateTruncating(dwSum[j]);
                    db.A[db.O + group * cg + j] = T.CreateTruncating(dbSum[j]);
                }
            }
        });
    }
}
