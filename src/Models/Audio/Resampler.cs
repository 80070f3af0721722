namespace ManagedTensor.Models.Audio;

/// <summary>
/// Band-limited resampling by windowed sinc interpolation, zero phase (no delay: output sample i is the signal at
/// input time t = i from/to), as ffmpeg's and librosa's resamplers do. Each output is
///   y[i] = Σ_j x[j] h(t - j) / Σ_j h(t - j),   h(d) = sinc(2 fc d) w(d / half),
/// with cutoff fc = 0.5 min(1, to/from) 0.97 cycles per input sample (below both Nyquist frequencies, so downsampling
/// 48 kHz to 16 kHz removes what would alias), a Hann window w over 16 zero crossings on each side, and the division
/// by the taps' sum keeping the gain at exactly 1 at DC. NAudio's WdlResamplingSampleProvider was the first choice, but
/// its filter delays the output by a fraction of a sample that depends on the rates, which shifts every timestamp.
/// </summary>
public static class Resampler
{
    private const int ZeroCrossings = 16;
    private const double Rolloff = 0.97;

    public static float[] Resample(float[] x, int fromRate, int toRate)
    {
        if (fromRate < 1 || toRate < 1) throw new ArgumentOutOfRangeException(nameof(fromRate), $"sample rates {fromRate} -> {toRate} must be positive");
        if (fromRate == toRate) return x;
        double ratio = (double)toRate / fromRate, fc = 0.5 * Math.Min(1, ratio) * Rolloff;
        double half = ZeroCrossings / (2 * fc);                       // the window's half-width in input samples
        int n = (int)Math.Round(x.LongLength * ratio);
        var y = new float[n];
        Parallel.For(0, n, i =>
        {
            double t = (double)i * fromRate / toRate;
            int lo = Math.Max(0, (int)Math.Ceiling(t - half)), hi = Math.Min(x.Length - 1, (int)Math.Floor(t + half));
            double sum = 0, weights = 0;
            for (int j = lo; j <= hi; j++)
            {
                double d = t - j;
                double h = Sinc(2 * fc * d) * (0.5 + 0.5 * Math.Cos(Math.PI * d / half));
                sum += x[j] * h;
                weights += h;
            }
            y[i] = weights == 0 ? 0 : (float)(sum / weights);
        });
        return y;
    }

    private static double Sinc(double v) => v == 0 ? 1 : Math.Sin(Math.PI * v) / (Math.PI * v);
}
