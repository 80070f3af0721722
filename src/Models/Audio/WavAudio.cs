using NAudio.Wave;

namespace ManagedTensor.Models.Audio;

/// <summary>What a WAV file held before conversion: encoding, bits per sample, channels, rate and length.</summary>
public sealed record WavInfo(string Encoding, int BitsPerSample, int Channels, int SampleRate, long Frames)
{
    public double Seconds => (double)Frames / SampleRate;
}

/// <summary>
/// Reads a WAV file into what Whisper takes: 16 kHz mono float samples in [-1, 1]. Through NAudio: WaveFileReader
/// parses the RIFF chunks, ToSampleProvider turns 8-bit unsigned, 16-, 24- and 32-bit PCM and 32-bit IEEE float into
/// floats (PCM divided by 2^(bits-1), as ffmpeg's s16le / 32768 that whisper uses), channels are averaged, and any
/// other rate is resampled to 16 kHz by <see cref="Resampler"/> (zero-phase windowed sinc, low-pass below both
/// Nyquist frequencies, so 48 kHz audio does not alias into the speech band).
/// Errors name the file: not a WAV, an encoding NAudio cannot convert (compressed formats), no samples.
/// </summary>
public static class WavAudio
{
    public static (float[] Samples, WavInfo Info) Read(string path)
    {
        if (!File.Exists(path)) throw new UserErrorException($"{path}: file not found");
        WaveFileReader reader;
        try { reader = new WaveFileReader(path); }
        catch (Exception e) when (e is FormatException or EndOfStreamException or InvalidDataException or ArgumentException)
        {
            throw new UserErrorException($"{path}: not a WAV file NAudio can read ({e.Message})");
        }
        using (reader)
        {
            var f = reader.WaveFormat;
            var info = new WavInfo(f.Encoding.ToString(), f.BitsPerSample, f.Channels, f.SampleRate, reader.SampleCount);
            if (f.Channels < 1 || f.SampleRate < 1) throw new UserErrorException($"{path}: {f.Channels} channels at {f.SampleRate} Hz is not audio");
            ISampleProvider source;
            try { source = reader.ToSampleProvider(); }
            catch (Exception e) when (e is ArgumentException or NotSupportedException or InvalidOperationException)
            {
                throw new UserErrorException($"{path}: {info.Encoding} audio at {info.BitsPerSample} bits is not supported ({e.Message}); PCM (8, 16, 24, 32 bit) and 32-bit float are");
            }
            float[] interleaved = ReadAll(source);
            if (interleaved.Length < f.Channels) throw new UserErrorException($"{path}: the WAV file holds no samples");
            float[] mono = Downmix(interleaved, f.Channels);
            return (Resampler.Resample(mono, f.SampleRate, LogMel.SampleRate), info);
        }
    }

    /// <summary>The mean of the channels of each frame: interleaved (frames, channels) to (frames).</summary>
    public static float[] Downmix(float[] interleaved, int channels)
    {
        if (channels == 1) return interleaved;
        var mono = new float[interleaved.Length / channels];
        for (int i = 0; i < mono.Length; i++)
        {
            double sum = 0;
            for (int c = 0; c < channels; c++) sum += interleaved[i * channels + c];
            mono[i] = (float)(sum / channels);
        }
        return mono;
    }

    private static float[] ReadAll(ISampleProvider p)
    {
        var all = new List<float>();
        var buffer = new float[16384];
        int n;
        while ((n = p.Read(buffer.AsSpan())) > 0) all.AddRange(buffer.AsSpan(0, n));
        return [.. all];
    }
}
