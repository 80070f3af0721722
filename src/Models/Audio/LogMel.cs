using System.Numerics;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.IO;

namespace ManagedTensor.Models.Audio;

/// <summary>
/// Whisper's input features, exactly as openai/whisper's audio.py and Hugging Face's WhisperFeatureExtractor compute
/// them from 16 kHz samples:
///   1. pad with zeros (or trim) to 30 s = 480,000 samples (<see cref="Chunks"/> cuts longer audio into 30 s pieces);
///   2. STFT with n_fft 400 (25 ms), hop 160 (10 ms), the periodic Hann window w[j] = 0.5 - 0.5 cos(2πj/400)
///      (torch.hann_window), center=True: the signal is reflect-padded by 200 samples on both sides, giving 3001
///      frames, of which the last is dropped (whisper's stft[..., :-1]) to leave 3000;
///   3. power |X[k]|^2 of the 201 one-sided bins, times the mel filter bank (80 or 128 x 201, Slaney-style, from
///      librosa, shipped as whisper_mel_filters.npz);
///   4. log10(max(mel, 1e-10)), floored at its maximum - 8 (an 80 dB range), then (x + 4) / 4 (to about [-1, 1]).
/// Computed in double precision; a (n_mels, 3000) float32 tensor comes out.
/// </summary>
public static class LogMel
{
    public const int SampleRate = 16000, NFft = 400, HopLength = 160;
    public const int ChunkSeconds = 30, ChunkSamples = ChunkSeconds * SampleRate, ChunkFrames = ChunkSamples / HopLength;

    private static readonly Lazy<Dictionary<string, Tensor>> Banks = new(() => Npz.Load(DataFiles.Find("data/audio/whisper_mel_filters.npz")));

    /// <summary>Whisper's filter bank of <paramref name="bins"/> (80 or 128) mel bins: (bins, 201).</summary>
    public static Tensor Filters(int bins)
    {
        if (bins is not (80 or 128)) throw new ArgumentOutOfRangeException(nameof(bins), bins, "Whisper's mel filter banks have 80 or 128 bins");
        return Banks.Value[$"mel_{bins}"];
    }

    /// <summary>
    /// The log-mel spectrogram (bins, frames) of the first frames x 10 ms of <paramref name="samples"/> (16 kHz mono,
    /// zero-padded): Whisper's (bins, 3000) of 30 s by default; a small model trained on short clips may take fewer.
    /// </summary>
    public static Tensor Compute(ReadOnlySpan<float> samples, int bins = 80, int frames = ChunkFrames)
    {
        if (frames < 1) throw new ArgumentOutOfRangeException(nameof(frames), frames, "a spectrogram needs at least one frame");
        // 1. Pad or trim to 30 s, then reflect-pad n_fft / 2 on both sides (torch.stft center=True, pad_mode "reflect":
        //    the mirror excludes the edge sample, x[-j] = x[j]).
        int half = NFft / 2, n = frames * HopLength;
        var padded = new double[n + 2 * half];
        for (int i = 0; i < Math.Min(n, samples.Length); i++) padded[half + i] = samples[i];
        for (int j = 1; j <= half; j++)
        {
            padded[half - j] = padded[half + j];
            padded[half + n - 1 + j] = padded[half + n - 1 - j];
        }

        // 2-3. Frame, window, power spectrum, mel. Frames are independent: split them across threads.
        var filters = Filters(bins).ToDoubleArray(); // (bins, 201) row-major
        int nBins = NFft / 2 + 1;
        var window = new double[NFft];
        for (int j = 0; j < NFft; j++) window[j] = 0.5 - 0.5 * Math.Cos(2 * Math.PI * j / NFft); // periodic Hann
        var mel = new double[bins * frames];                                                          // (bins, frames)
        var fft = new Fft(NFft);
        Parallel.For(0, frames, () => (new double[NFft], new double[nBins], new Complex[NFft], new Complex[NFft]), (f, _, s) =>
        {
            var (frame, power, a, b) = s;
            for (int j = 0; j < NFft; j++) frame[j] = padded[f * HopLength + j] * window[j];
            fft.PowerSpectrum(frame, power, a, b);
            for (int m = 0; m < bins; m++)
            {
                double sum = 0;
                for (int k = 0; k < nBins; k++) sum += filters[m * nBins + k] * power[k];
                mel[m * frames + f] = sum;
            }
            return s;
        }, _ => { });

        // 4. Log scale, dynamic range, normalization.
        double max = double.NegativeInfinity;
        for (int i = 0; i < mel.Length; i++) max = Math.Max(max, mel[i] = Math.Log10(Math.Max(mel[i], 1e-10)));
        var result = new float[mel.Length];
        for (int i = 0; i < mel.Length; i++) result[i] = (float)((Math.Max(mel[i], max - 8.0) + 4.0) / 4.0);
        return Tensor.FromArray(result, [bins, frames]);
    }

    /// <summary>
    /// Audio of any length as Whisper reads it: consecutive 30 s pieces (or <paramref name="chunkSamples"/>; the last
    /// one is zero-padded when its spectrogram is computed), each with its start time in seconds. Empty audio gives none.
    /// </summary>
    public static IEnumerable<(double StartSeconds, float[] Samples)> Chunks(float[] samples, int chunkSamples = ChunkSamples)
    {
        for (int start = 0; start < samples.Length; start += chunkSamples)
            yield return ((double)start / SampleRate, samples[start..Math.Min(samples.Length, start + chunkSamples)]);
    }
}
