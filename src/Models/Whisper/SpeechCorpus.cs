using ManagedTensor.Models.Audio;

namespace ManagedTensor.Models.Whisper;

/// <summary>One utterance of a corpus: its WAV file, who spoke it, and what was said.</summary>
public sealed record SpeechClip(string Path, string Voice, string Text);

/// <summary>
/// A speech corpus as scripts/make_speech_corpus.sh writes it: a folder with train.tsv and test.tsv, one clip per line,
/// "wav/NNNNN.wav&lt;TAB&gt;voice&lt;TAB&gt;transcript" (paths relative to the folder). The WAV files are read when a
/// batch needs them (<see cref="Example"/>), so a corpus of hours does not sit in memory as samples or spectrograms.
/// </summary>
public static class SpeechCorpus
{
    /// <summary>The clips of <paramref name="dir"/>/<paramref name="split"/>.tsv; errors name the file and line.</summary>
    public static List<SpeechClip> Read(string dir, string split)
    {
        string path = System.IO.Path.Combine(dir, split + ".tsv");
        if (!File.Exists(path))
            throw new UserErrorException($"{path}: no such manifest (make a corpus with: bash scripts/make_speech_corpus.sh {dir})");
        var clips = new List<SpeechClip>();
        int n = 0;
        foreach (string line in File.ReadLines(path))
        {
            n++;
            if (line.Length == 0) continue;
            var f = line.Split('\t');
            if (f.Length != 3 || f[0].Length == 0 || f[2].Trim().Length == 0)
                throw new UserErrorException($"{path}:{n}: expected 'wav path<TAB>voice<TAB>transcript', got '{line}'");
            clips.Add(new SpeechClip(System.IO.Path.Combine(dir, f[0]), f[1], f[2].Trim()));
        }
        if (clips.Count == 0) throw new UserErrorException($"{path}: the manifest lists no clips");
        return clips;
    }

    /// <summary>
    /// A clip as a training example: its log-mel spectrogram (n_mels, frames) and its token sequence, the prompt
    /// (start of transcript, no timestamps), the transcript's tokens and end-of-text, cut to <paramref name="maxTokens"/>.
    /// </summary>
    public static (Tensor Mel, int[] Tokens) Example(SpeechClip clip, WhisperTokenizer tok, int mels, int frames, int maxTokens)
    {
        var (samples, _) = WavAudio.Read(clip.Path);
        if (samples.Length > frames * LogMel.HopLength)
            throw new UserErrorException($"{clip.Path}: {samples.Length / (double)LogMel.SampleRate:F1} s is longer than the model's {frames / 100.0:F1} s input (raise --audio-seconds or drop the clip)");
        int[] tokens = [.. tok.Prompt(null, timestamps: false), .. tok.EncodeText(clip.Text), tok.EndOfText];
        return (LogMel.Compute(samples, mels, frames), tokens.Length <= maxTokens ? tokens : tokens[..maxTokens]);
    }
}
