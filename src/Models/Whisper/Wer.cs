using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace ManagedTensor.Models.Whisper;

/// <summary>Word edits between references and hypotheses: WER = (substitutions + deletions + insertions) / reference words.</summary>
public readonly record struct WordErrors(int Substitutions, int Deletions, int Insertions, int ReferenceWords)
{
    public int Edits => Substitutions + Deletions + Insertions;

    /// <summary>The word error rate (0 for an empty reference with an empty hypothesis; edits count when the reference is empty).</summary>
    public double Rate => ReferenceWords == 0 ? (Edits == 0 ? 0 : double.PositiveInfinity) : (double)Edits / ReferenceWords;

    public static WordErrors operator +(WordErrors a, WordErrors b) =>
        new(a.Substitutions + b.Substitutions, a.Deletions + b.Deletions, a.Insertions + b.Insertions, a.ReferenceWords + b.ReferenceWords);
}

/// <summary>
/// Word error rate as Whisper's paper reports it: both texts go through Whisper's BasicTextNormalizer (lower case,
/// text in [brackets], &lt;angles&gt; and (parentheses) removed, every mark, symbol and punctuation character (Unicode
/// categories M, S, P after NFKC) replaced by a space, whitespace collapsed), are split into words, and aligned by
/// Levenshtein distance over words, whose minimal edits are counted by kind. A corpus WER sums the edits and the
/// reference words of all utterances (not a mean of per-utterance rates).
/// </summary>
public static partial class Wer
{
    public static string Normalize(string s)
    {
        s = s.ToLowerInvariant();
        s = Brackets().Replace(s, "");
        s = Parentheses().Replace(s, "");
        var sb = new StringBuilder(s.Length);
        foreach (char c in s.Normalize(NormalizationForm.FormKC))
        {
            var cat = char.GetUnicodeCategory(c);
            bool drop = cat is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
                or UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol or UnicodeCategory.OtherSymbol
                or UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
                or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation
                or UnicodeCategory.OtherPunctuation;
            sb.Append(drop ? ' ' : c);
        }
        return Spaces().Replace(sb.ToString(), " ").Trim();
    }

    public static string[] Words(string text) => Normalize(text).Split(' ', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>The minimal word edits turning <paramref name="reference"/> into <paramref name="hypothesis"/> (after normalization).</summary>
    public static WordErrors Count(string reference, string hypothesis)
    {
        string[] r = Words(reference), h = Words(hypothesis);
        // d[i, j]: edits between the first i reference words and the first j hypothesis words, with the kinds of a
        // minimal path (ties prefer substitution, then deletion, then insertion: any choice gives the same total).
        var d = new (int Cost, int S, int D, int I)[r.Length + 1, h.Length + 1];
        for (int i = 1; i <= r.Length; i++) d[i, 0] = (i, 0, i, 0);
        for (int j = 1; j <= h.Length; j++) d[0, j] = (j, 0, 0, j);
        for (int i = 1; i <= r.Length; i++)
            for (int j = 1; j <= h.Length; j++)
            {
                var diag = d[i - 1, j - 1];
                (int Cost, int S, int D, int I) best = r[i - 1] == h[j - 1] ? diag : (diag.Cost + 1, diag.S + 1, diag.D, diag.I);
                var del = d[i - 1, j];
                if (del.Cost + 1 < best.Cost) best = (del.Cost + 1, del.S, del.D + 1, del.I);
                var ins = d[i, j - 1];
                if (ins.Cost + 1 < best.Cost) best = (ins.Cost + 1, ins.S, ins.D, ins.I + 1);
                d[i, j] = best;
            }
        var e = d[r.Length, h.Length];
        return new WordErrors(e.S, e.D, e.I, r.Length);
    }

    /// <summary>The corpus WER of pairs (reference, hypothesis): all edits over all reference words.</summary>
    public static WordErrors Count(IEnumerable<(string Reference, string Hypothesis)> pairs) =>
        pairs.Aggregate(default(WordErrors), (acc, p) => acc + Count(p.Reference, p.Hypothesis));

    [GeneratedRegex(@"[<\[][^>\]]*[>\]]")]
    private static partial Regex Brackets();

    [GeneratedRegex(@"\(([^)]+?)\)")]
    private static partial Regex Parentheses();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Spaces();
}
