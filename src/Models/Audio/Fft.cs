using System.Numerics;

namespace ManagedTensor.Models.Audio;

/// <summary>
/// The discrete Fourier transform X[k] = Σ_j x[j] e^(-2πi jk/n) of one length n, by mixed-radix Cooley-Tukey
/// (decimation in time): n = p m with p the smallest prime factor of n, the p subsequences x[r], x[r + p], ...
/// are transformed recursively (length m), and combined as
///   X[k + m q] = Σ_r (W_n^(r k) Y_r[k]) W_p^(r q),   W_n = e^(-2πi/n),  k &lt; m, q &lt; p,
/// which costs n p per level, so n (p1 + p2 + ...) in all. Whisper's n_fft 400 = 2^4 5^2 takes 18 x 400 complex
/// products instead of a plain DFT's 400 x 400 (a prime length falls back to that plain DFT, still exact).
/// Twiddles e^(-2πi e/n) are computed once per length, in double precision.
/// </summary>
public sealed class Fft
{
    private readonly Complex[] _twiddles; // e^(-2πi e / n), e < n

    public Fft(int n)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "FFT length must be positive");
        Length = n;
        _twiddles = new Complex[n];
        for (int e = 0; e < n; e++) _twiddles[e] = Complex.FromPolarCoordinates(1, -2 * Math.PI * e / n);
    }

    public int Length { get; }

    /// <summary>X = DFT(x), both of length n.</summary>
    public void Forward(ReadOnlySpan<Complex> x, Span<Complex> result)
    {
        if (x.Length != Length || result.Length != Length)
            throw new ArgumentException($"FFT of length {Length}: input {x.Length} and output {result.Length} must both be {Length}");
        Transform(x, 0, 1, Length, result, 1);
    }

    /// <summary>|X[k]|^2 for k = 0 .. n/2 of a real signal (the one-sided power spectrum, numpy's rfft bins).</summary>
    public void PowerSpectrum(ReadOnlySpan<double> x, Span<double> power, Span<Complex> scratchIn, Span<Complex> scratchOut)
    {
        for (int i = 0; i < Length; i++) scratchIn[i] = new Complex(x[i], 0);
        Forward(scratchIn, scratchOut);
        for (int k = 0; k <= Length / 2; k++)
        {
            var c = scratchOut[k];
            power[k] = c.Real * c.Real + c.Imaginary * c.Imaginary;
        }
    }

    /// <summary>
    /// The DFT of the n values x[offset], x[offset + stride], ... into <paramref name="y"/> (length n). The twiddle of
    /// this length n is W_n^e = W_N^(e twStride), with N the full length: subproblems read every twStride-th twiddle.
    /// </summary>
    private void Transform(ReadOnlySpan<Complex> x, int offset, int stride, int n, Span<Complex> y, int twStride)
    {
        if (n == 1) { y[0] = x[offset]; return; }
        int p = SmallestFactor(n), m = n / p;
        if (p == n) { Dft(x, offset, stride, n, y, twStride); return; }
        for (int r = 0; r < p; r++) // Y_r, the transform of the r-th subsequence, lands in y[r m .. r m + m)
            Transform(x, offset + r * stride, stride * p, m, y.Slice(r * m, m), twStride * p);
        Span<Complex> t = stackalloc Complex[p];
        int full = Length;
        for (int k = 0; k < m; k++)
        {
            for (int r = 0; r < p; r++) t[r] = y[r * m + k] * _twiddles[(int)((long)r * k * twStride % full)];
            // y[k + m q] for q < p reads only t: the same p slots Y_r[k] came from, so the combine is in place.
            for (int q = 0; q < p; q++)
            {
                Complex sum = t[0];
                for (int r = 1; r < p; r++) sum += t[r] * _twiddles[(int)((long)r * q * m * twStride % full)];
                y[k + m * q] = sum;
            }
        }
    }

    /// <summary>The plain O(n^2) DFT, for a prime length.</summary>
    private void Dft(ReadOnlySpan<Complex> x, int offset, int stride, int n, Span<Complex> y, int twStride)
    {
        for (int k = 0; k < n; k++)
        {
            Complex sum = Complex.Zero;
            for (int j = 0; j < n; j++) sum += x[offset + j * stride] * _twiddles[(int)((long)j * k % n * twStride)];
            y[k] = sum;
        }
    }

    private static int SmallestFactor(int n)
    {
        if (n % 2 == 0) return 2;
        for (int f = 3; (long)f * f <= n; f += 2)
            if (n % f == 0) return f;
        return n;
    }
}
