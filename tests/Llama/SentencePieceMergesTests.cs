using System.Text;
using ManagedTensor.Models.Tokenizers;
using Xunit;

namespace ManagedTensor.Tests.Llama;

/// <summary>
/// The queued merge loop (<see cref="SentencePieceMerges"/>) against llama2.c's encode as it is written (rescan every
/// adjacent pair for each merge, best score, leftmost on ties): the same tokens on a medium text with the stories260K
/// vocabulary, and on random vocabularies whose scores tie, are -inf or NaN.
/// </summary>
public class SentencePieceMergesTests
{
    /// <summary>llama2.c's encode, quadratic: the reference the queued merges must equal.</summary>
    private static List<int> Llama2cEncode(LlamaTokenizer t, string text)
    {
        var pieces = new List<int>();
        if (text.Length > 0 && t.TokenId(" ") is int space) pieces.Add(space);
        foreach (var rune in text.EnumerateRunes())
        {
            if (t.TokenId(rune.ToString()) is int id) { pieces.Add(id); continue; }
            foreach (byte b in Encoding.UTF8.GetBytes(rune.ToString())) pieces.Add(t.TokenId($"<0x{b:X2}>")!.Value);
        }
        while (true)
        {
            float best = float.NegativeInfinity;
            int bestIdx = -1, bestId = -1;
            for (int i = 0; i + 1 < pieces.Count; i++)
                if (t.TokenId(t.Vocab[pieces[i]] + t.Vocab[pieces[i + 1]]) is int id && t.Scores[id] > best)
                {
                    best = t.Scores[id]; bestIdx = i; bestId = id;
                }
            if (bestIdx < 0) return pieces;
            pieces[bestIdx] = bestId;
            pieces.RemoveAt(bestIdx + 1);
        }
    }

    [Fact]
    public void Stories260K_encoding_of_a_medium_text_equals_llama2c_rescan()
    {
        var tok = LlamaTokenizer.LoadLlama2c(RepoPaths.Tok512, 512);
        // 3 KB of Shakespeare (lines, punctuation, runs of spaces) and characters that fall back to bytes.
        string text = File.ReadAllText(RepoPaths.Of("data", "tinyshakespeare.txt"))[..3000] + "  Zoë ✓ naïve —\n\n end";
        var ids = tok.Encode(text, bos: false);
        Assert.Equal(Llama2cEncode(tok, text), ids);
        Assert.True(ids.Count < text.Length * 2 / 3, $"{ids.Count} tokens for {text.Length} characters: the merges did not run"); // 1,862 tokens
        Assert.Equal(text, tok.Decode([tok.Bos, .. ids]));      // after BOS the dummy-prefix space is dropped
    }

    [Fact]
    public void Random_vocabularies_with_tied_infinite_and_nan_scores_merge_as_llama2c()
    {
        var rng = new Random(5);
        float[] scorePool = [-1f, 0f, -0f, 1f, 2f, float.NegativeInfinity, float.NaN, float.PositiveInfinity];
        for (int trial = 0; trial < 20; trial++)
        {
            // Control tokens, the single characters, then some strings of 2..4 characters as merge targets.
            var vocab = new List<string> { "<unk>", "<s>", "</s>", " ", "a", "b", "c" };
            const string alphabet = " abc";
            for (int len = 2; len <= 4; len++)
                for (int k = 0; k < 40; k++)
                {
                    string s = new(Enumerable.Range(0, len).Select(_ => alphabet[rng.Next(alphabet.Length)]).ToArray());
                    if (!vocab.Contains(s)) vocab.Add(s);
                }
            var scores = vocab.Select(_ => scorePool[rng.Next(scorePool.Length)]).ToArray();
            var tok = new LlamaTokenizer([.. vocab], scores);
            string text = new(Enumerable.Range(0, 1 + rng.Next(150)).Select(_ => alphabet[rng.Next(alphabet.Length)]).ToArray());
            Assert.Equal(Llama2cEncode(tok, text), tok.Encode(text, bos: false));
        }
    }
}
