using ManagedTensor.Models.Whisper;
using ManagedTensor.Tests.Apps;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Whisper;

/// <summary>
/// The training pipeline end to end on a tiny corpus of tones (no espeak-ng needed): `mt transcribe train` writes
/// checkpoints and loss.png, --resume continues exactly, and `mt transcribe` and `mt transcribe wer` read what it wrote.
/// </summary>
public class WhisperTrainTests
{
    private static string MakeCorpus()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"mt-speech-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path.Combine(dir, "wav"));
        string[] texts = ["one two", "three", "four five six", "seven"];
        foreach (var (split, n) in new[] { ("train", 4), ("test", 2) })
        {
            var lines = new List<string>();
            for (int i = 0; i < n; i++)
            {
                string name = $"wav/{split}{i}.wav";
                File.WriteAllBytes(Path.Combine(dir, name), TestWav.Tone(4000 + 800 * i, 1, 16000, 16, false, 300 + 150 * i + (split == "test" ? 70 : 0), 0.3));
                lines.Add($"{name}\tvoice{i % 2}\t{texts[i % texts.Length]}");
            }
            File.WriteAllLines(Path.Combine(dir, split + ".tsv"), lines);
        }
        return dir;
    }

    private static string[] Args(string data, string outDir, int iters) =>
        ["transcribe", "train", "--data", data, "--out-dir", outDir, "--max-iters", iters.ToString(), "--batch-size", "2", "--eval-interval", "2",
         "--eval-clips", "1", "--d-model", "16", "--layers", "1", "--heads", "2", "--audio-seconds", "0.5"];

    /// <summary>The step and evaluation lines without what may differ between runs: the iteration total, timings, paths.</summary>
    private static List<string> Losses(string stdout) => stdout.Split('\n').Where(l => l.StartsWith("iter ", StringComparison.Ordinal) || l.StartsWith("step ", StringComparison.Ordinal))
        .Select(l => System.Text.RegularExpressions.Regex.Replace(l.Contains("(saved") ? l[..l.IndexOf("(saved", StringComparison.Ordinal)] : l[..l.IndexOf(", lr", StringComparison.Ordinal)], @"/\d+", "")).ToList();

    [Fact]
    public void TrainsResumesExactlyAndTranscribes()
    {
        string data = MakeCorpus();
        try
        {
            string whole = Path.Combine(data, "whole"), parts = Path.Combine(data, "parts");
            var r = Mt.Run(Args(data, whole, 4));
            Assert.True(r.Code == 0, r.ToString());
            Assert.True(File.Exists(Path.Combine(whole, "loss.png")) && File.Exists(Path.Combine(whole, "model.safetensors")), r.ToString());
            var wholeLosses = Losses(r.Out);
            Assert.Equal(4 + 3, wholeLosses.Count); // 4 steps, evaluations at 0, 2, 4

            var first = Mt.Run(Args(data, parts, 2));
            Assert.True(first.Code == 0, first.ToString());
            var again = Mt.Run(Args(data, parts, 2));
            Assert.Equal(1, again.Code);
            Assert.Contains("--resume", again.Err);
            var rest = Mt.Run("transcribe", "train", "--resume", "--out-dir", parts, "--max-iters", "4");
            Assert.True(rest.Code == 0, rest.ToString());
            Assert.Contains("resuming from", rest.Out);
            Assert.Equal(wholeLosses, Losses(first.Out).Concat(Losses(rest.Out)).ToList());

            var t = Mt.Run("transcribe", Path.Combine(data, "wav", "test0.wav"), "--model", whole, "--beam", "2", "--max-tokens", "4");
            Assert.True(t.Code == 0, t.ToString());
            Assert.StartsWith(Path.Combine(data, "wav", "test0.wav") + ":", t.Out);
            var ts = Mt.Run("transcribe", Path.Combine(data, "wav", "test1.wav"), "--model", whole, "--timestamps", "--max-tokens", "4");
            Assert.True(ts.Code == 0, ts.ToString());
            Assert.StartsWith(Path.Combine(data, "wav", "test1.wav") + ":" + Environment.NewLine, ts.Out);
            var w = Mt.Run("transcribe", "wer", "--model", whole, "--data", data, "--max-tokens", "4");
            Assert.True(w.Code == 0, w.ToString());
            Assert.Contains("over 2 clips, 3 words", w.Out);

            File.WriteAllText(Path.Combine(data, "text.wav"), "not audio");
            var bad = Mt.Run("transcribe", Path.Combine(data, "text.wav"), "--model", whole);
            Assert.Equal(1, bad.Code);
            Assert.Contains("text.wav: not a WAV", bad.Err);
        }
        finally { Directory.Delete(data, true); }
    }

    [Fact]
    public void AnotherArchitectureIsRefusedByName()
    {
        var r = Mt.Run("transcribe", "x.wav", "--model", RepoPaths.Of("tests", "fixtures", "hf_llama", "f16_tied"));
        Assert.Equal(1, r.Code);
        Assert.Contains("not a Whisper checkpoint", r.Err);
    }
}
