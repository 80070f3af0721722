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
                    var (scale, shift) = buf.Affine(group * cg + j, mu, rstd);
                    buf.Apply(start + j * s, s, scale, shift);
                }
                buf.SaveStats(ng, mu, rstd);
            }
        });
    }
}
