using System.Numerics;
using ManagedTensor.Models.Audio;
using ManagedTensor.Models.IO;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Whisper;

/// <summary>
/// The front end: the FFT against a plain DFT, the log-mel spectrogram of jfk.wav against an independent numpy
/// implementation (tests/fixtures/whisper/make_logmel.py, checked there against torch.stft as whisper calls it), and
/// WAV reading of the encodings, rates and channel counts users have, with clear errors for the rest.
/// </summary>
public class WhisperFrontEndTests
{
    private static readonly Lazy<Dictionary<string, Tensor>> Fixture = new(() => Npz.Load(RepoPaths.Of("tests", "fixtures", "whisper", "logmel_jfk.npz")));
    private static readonly Lazy<float[]> Jfk = new(() => WavAudio.Read(RepoPaths.Of("data", "audio", "jfk.wav")).Samples);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(12)]
    [InlineData(45)]
    [InlineData(400)]
    [InlineData(401)] // prime: the plain-DFT fallback
    public void FftMatchesAPlainDft(int n)
    {
        var x = Enumerable.Range(0, n).Select(i => new Complex(Math.Sin(0.37 * i * i + 1), Math.Cos(1.3 * i))).ToArray();
        var got = new Complex[n];
        new Fft(n).Forward(x, got);
        for (int k = 0; k < n; k++)
        {
            Complex want = Complex.Zero;
            for (int j = 0; j < n; j++) want += x[j] * Complex.FromPolarCoordinates(1, -2 * Math.PI * ((long)j * k % n) / n);
            Assert.True((got[k] - want).Magnitude < 1e-9 * n, $"n {n} bin {k}: {got[k]} vs {want}");
        }
    }

    [Theory]
    [InlineData(80, 3)]
    [InlineData(128, 30)]
    public void LogMelOfJfkMatchesNumpy(int bins, int step)
    {
        var mel = LogMel.Compute(Jfk.Value, bins);
        Assert.Equal([bins, LogMel.ChunkFrames], mel.Shape);
        var want = Fixture.Value[$"mel{bins}_frames"];                    // (bins, frames 0, step, 2 step, ...)
        int count = want.Shape[1];
        var got = mel.Narrow(1, 0, step * count).Reshape(bins, count, step).Narrow(2, 0, 1).Reshape(bins, count);
        TestUtil.AssertClose(want.ToDoubleArray(), got.ToDoubleArray(), 0, 1e-4, $"mel{bins}");
        var stats = Fixture.Value[$"mel{bins}_stats"].ToDoubleArray();    // max, mean, last frame's first bin
        var all = mel.ToDoubleArray();
        Assert.Equal(stats[0], all.Max(), 1e-4);
        Assert.Equal(stats[1], all.Average(), 1e-4);
        Assert.Equal(stats[2], all[LogMel.ChunkFrames - 1], 1e-4);
        // Control: the same audio one hop later is a different spectrogram (the comparison can fail).
        var shifted = LogMel.Compute(Jfk.Value.AsSpan(LogMel.HopLength), bins).Narrow(1, 0, step * count).Reshape(bins, count, step).Narrow(2, 0, 1).Reshape(bins, count);
        Assert.True(want.ToDoubleArray().Zip(shifted.ToDoubleArray()).Max(p => Math.Abs(p.First - p.Second)) > 0.05);
    }

    [Fact]
    public void JfkIsReadAs16kMono()
    {
        var (samples, info) = WavAudio.Read(RepoPaths.Of("data", "audio", "jfk.wav"));
        Assert.Equal(("Pcm", 16, 1, 16000, 176000L), (info.Encoding, info.BitsPerSample, info.Channels, info.SampleRate, info.Frames));
        Assert.Equal(176000, samples.Length);
        Assert.InRange(samples.Max(), 0.1f, 1f);
    }

    /// <summary>A 440 Hz tone at 0.5 amplitude in every encoding: each reads back as that tone at 16 kHz mono.</summary>
    [Theory]
    [InlineData(1, 16000, 16, false)]
    [InlineData(2, 16000, 16, false)]  // stereo: channels averaged
    [InlineData(1, 16000, 8, false)]   // unsigned 8-bit
    [InlineData(1, 16000, 24, false)]
    [InlineData(2, 48000, 32, true)]   // float, stereo, resampled
    [InlineData(1, 44100, 16, false)]  // a rate that is not a multiple of 16 kHz
    public void WavEncodingsRatesAndChannelsReadAsTheSameTone(int channels, int rate, int bits, bool isFloat)
    {
        string path = Path.Combine(Path.GetTempPath(), $"mt-wav-{Guid.NewGuid():N}.wav");
        try
        {
            int frames = rate / 4; // 0.25 s
            File.WriteAllBytes(path, TestWav.Tone(frames, channels, rate, bits, isFloat, 440, 0.5));
            var (samples, info) = WavAudio.Read(path);
            Assert.Equal((channels, rate, bits), (info.Channels, info.SampleRate, info.BitsPerSample));
            Assert.Equal(4000, samples.Length);
            double tolerance = bits == 8 ? 0.01 : 2e-3;
            for (int i = 200; i < 3800; i++) // away from the resampler's edges
                Assert.True(Math.Abs(samples[i] - 0.5 * Math.Sin(2 * Math.PI * 440 * i / 16000.0)) < tolerance,
                    $"sample {i}: {samples[i]} vs {0.5 * Math.Sin(2 * Math.PI * 440 * i / 16000.0)}");
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void BadWavFilesAreClearErrors()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"mt-badwav-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string text = Path.Combine(dir, "notes.wav"), empty = Path.Combine(dir, "empty.wav");
            File.WriteAllText(text, "this is not audio");
            File.WriteAllBytes(empty, TestWav.Tone(0, 1, 16000, 16, false, 440, 0.5));
            var e = Assert.Throws<UserErrorException>(() => WavAudio.Read(text));
            Assert.Contains("notes.wav", e.Message);
            Assert.Contains("not a WAV", e.Message);
            e = Assert.Throws<UserErrorException>(() => WavAudio.Read(empty));
            Assert.Contains("no samples", e.Message);
            e = Assert.Throws<UserErrorException>(() => WavAudio.Read(Path.Combine(dir, "missing.wav")));
            Assert.Contains("not found", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void NpzFilesThatAreNotNumpyArchivesAreClearErrors()
    {
        string path = Path.Combine(Path.GetTempPath(), $"mt-npz-{Guid.NewGuid():N}.npz");
        try
        {
            File.WriteAllText(path, "not a zip");
            var e = Assert.Throws<UserErrorException>(() => Npz.Load(path));
            Assert.Contains(path, e.Message);
            var header = System.Text.Encoding.ASCII.GetBytes("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }\n");
            byte[] npy = [0x93, .. "NUMPY"u8, 1, 0, (byte)header.Length, 0, .. header, .. new byte[8]];
            var bad = Assert.Throws<UserErrorException>(() => Npz.ReadNpy(npy, "x.npy"));
            Assert.Contains("x.npy: dtype '<i4' is not read", bad.Message);
            Assert.Equal([80, 201], Npz.Load(RepoPaths.Of("data", "audio", "whisper_mel_filters.npz"))["mel_80"].Shape);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void LongAudioIsCutInto30SecondChunks()
    {
        var chunks = LogMel.Chunks(new float[LogMel.ChunkSamples * 2 + 16000]).ToList();
        Assert.Equal([0.0, 30.0, 60.0], chunks.Select(c => c.StartSeconds));
        Assert.Equal([LogMel.ChunkSamples, LogMel.ChunkSamples, 16000], chunks.Select(c => c.Samples.Length));
        Assert.Empty(LogMel.Chunks([]));
    }
}

/// <summary>WAV files written byte by byte (RIFF, fmt, data), independent of NAudio.</summary>
public static class TestWav
{
    public static byte[] Tone(int frames, int channels, int rate, int bits, bool isFloat, double hz, double amplitude)
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms);
        int block = channels * bits / 8, dataBytes = frames * block;
        w.Write("RIFF"u8); w.Write(36 + dataBytes); w.Write("WAVE"u8);
        w.Write("fmt "u8); w.Write(16); w.Write((short)(isFloat ? 3 : 1)); w.Write((short)channels); w.Write(rate);
        w.Write(rate * block); w.Write((short)block); w.Write((short)bits);
        w.Write("data"u8); w.Write(dataBytes);
        for (int i = 0; i < frames; i++)
        {
            double v = amplitude * Math.Sin(2 * Math.PI * hz * i / rate);
            for (int c = 0; c < channels; c++)
            {
                double s = channels == 2 ? (c == 0 ? v * 1.5 : v * 0.5) : v; // stereo channels differ; their mean is v
                if (isFloat) w.Write((float)s);
                else if (bits == 8) w.Write((byte)Math.Round(s * 127 + 128));
                else if (bits == 16) w.Write((short)Math.Round(s * 32767));
                else if (bits == 24) { int x = (int)Math.Round(s * 8388607); w.Write((byte)x); w.Write((byte)(x >> 8)); w.Write((byte)(x >> 16)); }
                else w.Write((int)Math.Round(s * int.MaxValue));
            }
        }
        w.Flush();
        return ms.ToArray();
    }
}
