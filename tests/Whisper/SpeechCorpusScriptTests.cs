using System.Diagnostics;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Whisper;

/// <summary>
/// scripts/make_speech_corpus.sh's generated sentences, through its --print mode (no espeak-ng needed, well under a
/// second): the same seed gives the same sentences, every sentence is spoken once (so no test sentence is a training
/// sentence), every 10th is a test sentence, and every word of a test sentence occurs in the training sentences.
/// </summary>
public class SpeechCorpusScriptTests
{
    private static List<(string Split, string Text)> Print(params string[] args)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in (string[])[RepoPaths.Of("scripts", "make_speech_corpus.sh"), "unused-dir", .. args, "--print"]) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd(), stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"exit {p.ExitCode}: {stderr}");
        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')).Select(f => (f[0], f[1])).ToList();
    }

    [Fact]
    public void GeneratedSentencesAreDeterministicDistinctAndCoverTheTestWords()
    {
        var a = Print("300", "--seed", "7");
        Assert.Equal(300, a.Count);
        Assert.Equal(a, Print("300", "--seed", "7"));
        Assert.NotEqual(a, Print("300", "--seed", "8"));
        Assert.Equal(300, a.Select(s => s.Text).Distinct().Count());
        Assert.Equal(Enumerable.Range(0, 300).Select(i => i % 10 == 9 ? "test" : "train"), a.Select(s => s.Split));
        var words = a.Select(s => s.Text.Split(' ')).ToList();
        Assert.All(words, w => Assert.InRange(w.Length, 5, 8));
        var trainWords = a.Zip(words).Where(x => x.First.Split == "train").SelectMany(x => x.Second).ToHashSet();
        Assert.InRange(trainWords.Count, 100, 250);      // a closed vocabulary of about 200 words
        var unseen = a.Zip(words).Where(x => x.First.Split == "test").SelectMany(x => x.Second).Where(w => !trainWords.Contains(w)).ToList();
        Assert.True(unseen.Count <= 3, $"test words not in the 270 training sentences: {string.Join(", ", unseen)}");
    }

    [Fact]
    public void ShakespeareModeAndBadArgumentsAreClear()
    {
        var lines = Print("20", "--text", "shakespeare");
        Assert.Equal(20, lines.Count);
        Assert.All(lines, l => Assert.InRange(l.Text.Split(' ').Length, 4, 12));
        var psi = new ProcessStartInfo("bash", [RepoPaths.Of("scripts", "make_speech_corpus.sh"), "x", "20", "--text", "poetry", "--print"]) { RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(1, p.ExitCode);
        Assert.Contains("--text 'poetry' must be generated or shakespeare", err);
    }
}
