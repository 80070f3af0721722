using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Tokenizers;
using ManagedTensor.Models.Whisper;
using Xunit;

namespace ManagedTensor.Tests.Whisper;

/// <summary>Whisper's tokens, the decoding rules, greedy and beam search on the tiny fixture model, and WER.</summary>
public class WhisperDecodingTests
{
    private static readonly Lazy<WhisperTokenizer> English = new(WhisperTokenizer.EnglishFromDataFolder);

    private static readonly Lazy<WhisperModel> Tiny = new(() =>
    {
        using var ck = HfCheckpoint.Open(WhisperModelTests.TinyDir);
        return HfWhisper.LoadModel(ck);
    });

    /// <summary>
    /// A 120-token vocabulary in Whisper's order for the tiny model: 100 plain tokens, then &lt;|endoftext|&gt; (100),
    /// &lt;|startoftranscript|&gt;, &lt;|en|&gt;, &lt;|translate|&gt;, &lt;|transcribe|&gt;, &lt;|notimestamps|&gt; (105) and
    /// timestamps &lt;|0.00|&gt; .. &lt;|0.26|&gt; (106 .. 119).
    /// </summary>
    private static readonly Lazy<WhisperTokenizer> Small = new(() =>
    {
        var tokens = Enumerable.Range(0, 100).Select(i => $"w{i}").Concat(["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|notimestamps|>"])
            .Concat(Enumerable.Range(0, 14).Select(i => $"<|{i * 0.02:0.00}|>")).ToArray();
        return new WhisperTokenizer(new BpeTokenizer(new BpeModel
        {
            Tokens = tokens,
            Merges = [],
            Added = tokens.Select((t, i) => (t, i, i >= 100)).Where(a => a.Item3).ToList(),
        }));
    });

    [Fact]
    public void EnglishVocabularyHasWhispersLayout()
    {
        var t = English.Value;
        Assert.Equal(51864, t.VocabSize);
        Assert.False(t.Multilingual);
        Assert.Equal((50256, 50257, 50357, 50358, 50362, 50363), (t.EndOfText, t.StartOfTranscript, t.Translate, t.Transcribe, t.NoTimestamps, t.TimestampBegin));
        Assert.Equal(50258, t.Language("en"));
        Assert.Equal(51863, t.Text.TokenId("<|30.00|>"));
        Assert.Equal(30.0, t.TimeOf(51863), 1e-9);
        Assert.Equal([50257, 50362], t.Prompt("en", timestamps: false)); // English-only: no language or task token
        // whisper-tiny.en's tokens of the JFK sentence (GPT-2's BPE with a leading space).
        Assert.Equal([843, 523, 616, 5891, 3399, 11], t.EncodeText("And so my fellow Americans,"));
        Assert.Equal("And so my fellow Americans,", t.DecodeText([50257, 50362, 843, 523, 616, 5891, 3399, 11, 50256]));
        Assert.Throws<UserErrorException>(() => t.Language("xx"));
    }

    [Fact]
    public void TimestampRulesShapeTheNextToken()
    {
        var t = Small.Value;
        float[] Flat() => Enumerable.Repeat(0f, 120).ToArray();
        bool Allowed(float[] l, int id) => !float.IsNegativeInfinity(l[id]);

        var off = WhisperSearch.SuppressTokens(Flat(), t, [], timestamps: false);
        Assert.True(Allowed(off, 5) && Allowed(off, 100));                                    // text and end-of-text
        Assert.True(Enumerable.Range(101, 19).All(i => !Allowed(off, i)));                     // specials and timestamps

        var first = WhisperSearch.SuppressTokens(Flat(), t, [], timestamps: true);
        Assert.True(Enumerable.Range(0, 106).All(i => !Allowed(first, i)));                    // a timestamp first
        Assert.True(Enumerable.Range(106, 14).All(i => Allowed(first, i)));                    // all <= 1 s here

        var shortAudio = WhisperSearch.SuppressTokens(Flat(), t, [], timestamps: true, timestampCount: 5); // a model of 80 ms audio
        Assert.True(Enumerable.Range(106, 5).All(i => Allowed(shortAudio, i)) && Enumerable.Range(111, 9).All(i => !Allowed(shortAudio, i)));

        var afterStart = WhisperSearch.SuppressTokens(Flat(), t, [107, 5], timestamps: true);  // <|0.02|> w5: open segment
        Assert.False(Allowed(afterStart, 106) || Allowed(afterStart, 107));                    // its end lies after its start
        Assert.True(Allowed(afterStart, 108));

        var eotLikely = Flat();
        eotLikely[100] = 5f;                                                                     // (else the timestamps' mass forces one)
        var pair = WhisperSearch.SuppressTokens(eotLikely, t, [107, 5, 109], timestamps: true);  // a segment just ended
        Assert.True(Enumerable.Range(0, 100).All(i => !Allowed(pair, i)));                     // the next start (or the end)
        Assert.True(Allowed(pair, 109) && !Allowed(pair, 108) && Allowed(pair, 100));

        var both = WhisperSearch.SuppressTokens(Flat(), t, [107, 5, 109, 109], timestamps: true); // a pair: text next
        Assert.True(Enumerable.Range(106, 14).All(i => !Allowed(both, i)) && Allowed(both, 7));

        // All timestamps together beat the best text token: a timestamp is forced.
        var heavy = Flat();
        for (int i = 106; i < 120; i++) heavy[i] = 1f;
        heavy[5] = 2f;
        WhisperSearch.SuppressTokens(heavy, t, [107, 5], timestamps: true);
        Assert.False(Allowed(heavy, 5));

        var segs = WhisperSearch.Segments(t, [106, 5, 6, 110, 110, 7, 115], offset: 30, chunkEnd: 40);
        Assert.Equal([(30.0, 30.08), (30.08, 30.18)], segs.Select(s => (Math.Round(s.Start, 6), Math.Round(s.End, 6))));
    }

    /// <summary>Greedy picks each step's best allowed token; its log probability is the teacher-forced sum.</summary>
    [Fact]
    public void GreedyAndBeamScoresAreTheTeacherForcedLogProbabilities()
    {
        var m = Tiny.Value;
        var t = Small.Value;
        var mel = ManagedTensor.Models.IO.SafeTensors.Load(Path.Combine(WhisperModelTests.TinyDir, "reference.safetensors"))["mel"];
        using var noGrad = GradMode.NoGrad();
        var audio = m.Encode(mel);
        int[] prompt = [101, 105];
        foreach (int beam in new[] { 1, 3 })
        {
            var (tokens, logProb) = WhisperSearch.Decode(m, t, audio, prompt, new DecodeOptions(Beam: beam, MaxTokens: 8));
            Assert.NotEmpty(tokens);
            // Rescore with one teacher-forced forward and the same suppression.
            int[] all = [.. prompt, .. tokens];
            var logits = m.Logits(mel, Tensor.FromArray(all.Select(x => (long)x).ToArray(), [1, all.Length])).ToArray<float>();
            double sum = 0;
            for (int i = 0; i <= tokens.Length; i++)
            {
                var row = WhisperSearch.SuppressTokens(logits.AsSpan((prompt.Length - 1 + i) * 120, 120).ToArray(), t, tokens[..i], false);
                double max = row.Max(), lse = max + Math.Log(row.Sum(x => Math.Exp(x - max)));
                int next = i < tokens.Length ? tokens[i] : t.EndOfText;
                if (i == tokens.Length && tokens.Length == 8) break; // stopped by the token limit, not by end-of-text
                if (beam == 1) Assert.Equal(Array.IndexOf(row, row.Max()), next);
                sum += row[next] - lse;
            }
            Assert.Equal(sum, logProb, 1e-3);
        }
    }

    [Theory]
    [InlineData("the cat sat on the mat", "the cat sat on the mat", 0, 0, 0, 6)]
    [InlineData("the cat sat on the mat", "the cat sit on mat", 1, 1, 0, 6)]
    [InlineData("ask not", "ask not what", 0, 0, 1, 2)]
    [InlineData("Hello, World! It's 5 o'clock.", "hello world it s 5 o clock", 0, 0, 0, 7)]
    [InlineData("[noise] hello (laughs) there", "hello there", 0, 0, 0, 2)]
    [InlineData("a b c", "", 0, 3, 0, 3)]
    public void WordErrorsCountEditsAfterNormalization(string reference, string hypothesis, int s, int d, int i, int n)
    {
        Assert.Equal(new WordErrors(s, d, i, n), Wer.Count(reference, hypothesis));
    }

    [Fact]
    public void CorpusWerSumsEditsOverReferenceWords()
    {
        var e = Wer.Count([("one two three four", "one two three four"), ("five six", "five seven eight")]);
        Assert.Equal(new WordErrors(1, 0, 1, 6), e);
        Assert.Equal(2.0 / 6, e.Rate, 1e-12);
    }
}
