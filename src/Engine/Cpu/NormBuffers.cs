using System.Numerics;

namespace ManagedTensor.Cpu;

/// <summary>
/// What the CPU batch and group norm forwards share (<see cref="CpuBatchNorm"/>, <see cref="CpuGroupNorm"/>): their
/// buffers (x, y, the saved mean and 1/std per normalized set, the optional per-channel weight and bias) and the
/// per-channel affine they apply once the statistics are known: y = (x - mu) * rstd * w_c + b_c = x * scale + shift.
/// </summary>
internal readonly struct NormBuffers<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public readonly (T[] A, int O) X, Y, Mean, Invstd;
    public readonly (T[]? A, int O) W, B;   // null arrays: no affine (weight 1, bias 0)

    public NormBuffers(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor invstd)
    {
        X = NnKernels.Buf<T>(x);
        Y = NnKernels.Buf<T>(y);
        Mean = NnKernels.Buf<T>(mean);
        Invstd = NnKernels.Buf<T>(invstd);
        W = w.Numel > 0 ? NnKernels.Buf<T>(w) : default;
        B = b.Numel > 0 ? NnKernels.Buf<T>(b) : default;
    }

    /// <summary>Channel <paramref name="ch"/>'s scale rstd * w_c and shift b_c - mu * scale, in double.</summary>
    public (double Scale, double Shift) Affine(int ch, double mu, double rstd)
    {
        double scale = rstd * (W.A is null ? 1 : double.CreateTruncating(W.A[W.O + ch]));
        return (scale, (B.A is null ? 0 : double.CreateTruncating(B.A[B.O + ch])) - mu * scale);
    }

    /// <summary>Writes y[o .. o + count) = x * scale + shift.</summary>
    public void Apply(int o, int count, double scale, double shift)
        => NormSums.Affine<T>(X.A.AsSpan(X.O + o, count), T.CreateTruncating(scale), T.CreateTruncating(shift), Y.A.AsSpan(Y.O + o, count));

    /// <summary>Writes y[o .. o + count) = silu(x * scale + shift) (a norm fused with the SiLU after it).</summary>
    public void ApplySilu(int o, int count, double scale, double shift)
        => NormSilu.AffineSilu<T>(X.A.AsSpan(X.O + o, count), T.CreateTruncating(scale), T.CreateTruncating(shift), Y.A.AsSpan(Y.O + o, count));

    /// <summary>Saves normalized set <paramref name="i"/>'s mean and 1/std for the backward pass.</summary>
    public void SaveStats(int i, double mu, double rstd)
    {
        Mean.A[Mean.O + i] = T.CreateTruncating(mu);
        Invstd.A[Invstd.O + i] = T.CreateTruncating(rstd);
    }
}
