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
/// With silu on (the op GroupNormSilu, Ops/GroupNormSiluOps.cs) the forward writes z = silu(y) in its output pass and
/// the backward's first pass turns dz into g = dz silu'(y), y recomputed from x, written into dx and read back from
/// there by the second (<see cref="NormSilu"/>; as <see cref="CpuBatchNorm"/> does for batch norm).
/// </summary>
internal static class CpuGroupNorm
{
    public static void Forward(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor invstd, GroupNormAttrs a, bool silu = false)
    {
        NnKernels.CheckSameDType(silu ? "GroupNormSilu" : "GroupNorm", x, y, mean, invstd);
        if (x.DType == DType.F32) Forward(x, new NormBuffers<float>(x, w, b, y, mean, invstd), a, silu);
        else Forward(x, new NormBuffers<double>(x, w, b, y, mean, invstd), a, silu);
    }

    private static void Forward<T>(Tensor xt, NormBuffers<T> buf, GroupNormAttrs a, bool silu) where T : unmanaged, IFloatingPointIeee754<T>
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
                    if (silu) buf.ApplySilu(ng * m + j * s, s, scale, shift);
                    else buf.Apply(ng * m + j * s, s, scale, shift);
                }
                buf.SaveStats(ng, mu, rstd);
            }
        });
    }

    /// <summary>dx, dweight, dbias from dy (silu off) or from dz, the gradient at silu(y) (on: the optional bias <paramref name="b"/> recomputes y).</summary>
    public static void Backward(Tensor dy, Tensor x, Tensor w, Tensor mean, Tensor invstd, Tensor dx, Tensor dw, Tensor db, Tensor? b = null, bool silu = false)
    {
        NnKernels.CheckSameDType(silu ? "GroupNormSiluBackward" : "GroupNormBackward", dy, x, mean, invstd, dx);
        if (x.DType == DType.F32) Backward<float>(dy, x, w, mean, invstd, dx, dw, db, b, silu);
        else Backward<double>(dy, x, w, mean, invstd, dx, dw, db, b, silu);
    }

    private static void Backward<T>(Tensor dyt, Tensor xt, Tensor wt, Tensor meant, Tensor invstdt, Tensor dxt, Tensor dwt, Tensor dbt, Tensor? bt, bool silu)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = xt.Shape[0], c = xt.Shape[1], g = meant.Shape[1], cg = c / g;
        int s = c == 0 ? 0 : xt.Numel / (n * c);   // spatial size per channel
        int m = cg * s;                             // values per group
        (T[] A, int O) dy = NnKernels.Buf<T>(dyt), x = NnKernels.Buf<T>(xt), dx = NnKernels.Buf<T>(dxt);
        (T[] A, int O) mean = NnKernels.Buf<T>(meant), invstd = NnKernels.Buf<T>(invstdt), dw = NnKernels.Buf<T>(dwt), db = NnKernels.Buf<T>(dbt);
        (T[]? A, int O) w = wt.Numel > 0 ? NnKernels.Buf<T>(wt) : default, bias = bt is { Numel: > 0 } ? NnKernels.Buf<T>(bt) : default;
        var gy = silu ? dx : dy; // with silu, the first pass writes the gradient at y into dx and the second reads it there
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
                        double wc = w.A is null ? 1 : double.CreateTruncating(w.A[w.O + group * cg + j]);
                        if (silu)
                        {
                            // y = x * scale + shift as the forward wrote it
                            double scale = rstd * wc, shift = (bias.A is null ? 0 : double.CreateTruncating(bias.A[bias.O + group * cg + j])) - double.CreateTruncating(muT) * scale;
                            (sumG[j], sumGxc[j]) = NormSilu.GradientSums<T>(dy.A.AsSpan(dy.O + o, s), x.A.AsSpan(x.O + o, s),
                                T.CreateTruncating(scale), T.CreateTruncating(shift), muT, dx.A.AsSpan(dx.O + o, s));
                        }
                        else (sumG[j], sumGxc[j]) = NormSums.GradientSums<T>(dy.A.AsSpan(dy.O + o, s), x.A.AsSpan(x.O + o, s), muT);
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
                        NormSums.InputGradient<T>(gy.A.AsSpan(gy.O + o, s), x.A.AsSpan(x.O + o, s), muT, T.CreateTruncating(rstd * wc), b, k, dx.A.AsSpan(dx.O + o, s));
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
