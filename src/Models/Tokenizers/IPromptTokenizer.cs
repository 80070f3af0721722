namespace ManagedTensor.Models.Tokenizers;

/// <summary>
/// What text generation needs from a tokenizer: prompt text to ids, and ids back to bytes one token at a time (a
/// streaming UTF-8 decoder joins byte-fallback pieces of one character). Implemented by <see cref="LlamaTokenizer"/>
/// (llama2.c and GGUF sentencepiece vocabularies) and <see cref="BpeTokenizer"/> (Hugging Face tokenizer.json).
/// </summary>
public interface IPromptTokenizer
{
    int VocabSize { get; }

    /// <summary>Beginning-of-sequence id, or -1 when the vocabulary has none.</summary>
    int Bos { get; }

    /// <summary>End-of-sequence id, or -1 when the vocabulary has none.</summary>
    int Eos { get; }

    /// <summary>Whether a prompt starts with BOS (HF's post-processor / add_bos_token, GGUF's add_bos_token).</summary>
    bool AddBos { get; }

    /// <summary>
    /// Token ids of <paramref name="text"/>. With <paramref name="parseSpecial"/>, special tokens written in the text
    /// (&lt;|im_start|&gt;, &lt;s&gt;, ...) become their single ids, as chat templates expect; otherwise they are plain text.
    /// </summary>
    List<int> Encode(string text, bool bos = true, bool eos = false, bool parseSpecial = false);

    /// <summary>The bytes <paramref name="token"/> adds after <paramref name="prev"/> (-1: at the start).</summary>
    ReadOnlySpan<byte> DecodeBytes(int prev, int token);

    /// <summary>The text of a token sequence (BOS and EOS are not printed).</summary>
    string Decode(IReadOnlyList<int> tokens);

    /// <summary>The id of a token string exactly as the vocabulary stores it (special tokens included), or null.</summary>
    int? TokenId(string piece);

    /// <summary>The stored string of token <paramref name="id"/> (what a chat template writes for bos_token / eos_token).</summary>
    string TokenText(int id);
}

public static class PromptTokenizerExtensions
{
    /// <summary>
    /// The text of a token sequence from its bytes (<see cref="IPromptTokenizer.DecodeBytes"/>), BOS and EOS
    /// skipped; the bytes are gathered first so that a character split over several tokens decodes whole.
    /// </summary>
    public static string DecodeText(this IPromptTokenizer tokenizer, IReadOnlyList<int> tokens)
    {
        var bytes = new List<byte>();
        int prev = -1;
        foreach (int t in tokens)
        {
            if (t != tokenizer.Bos && t != tokenizer.Eos) bytes.AddRange(tokenizer.DecodeBytes(prev, t).ToArray());
            prev = t;
        }
        return System.Text.Encoding.UTF8.GetString(bytes.ToArray());
    }
}

/// <summary>Splits text at occurrences of special-token strings (longest match first), keeping the text between them.</summary>
public static class SpecialTokens
{
    /// <summary>The pieces of <paramref name="text"/> in order: (text, -1) for ordinary text, (content, id) for a special token.</summary>
    public static List<(string Text, int Id)> Split(string text, IReadOnlyDictionary<string, int> specials)
    {
        var result = new List<(string, int)>();
        if (specials.Count == 0) { if (text.Length > 0) result.Add((text, -1)); return result; }
        var byFirst = specials.Keys.Where(k => k.Length > 0).GroupBy(k => k[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(k => k.Length).ToArray());
        int start = 0, i = 0;
        while (i < text.Length)
        {
            string? match = null;
            if (byFirst.TryGetValue(text[i], out var candidates))
                foreach (var s in candidates)
                    if (string.CompareOrdinal(text, i, s, 0, s.Length) == 0) { match = s; break; }
            if (match is null) { i++; continue; }
            if (i > start) result.Add((text[start..i], -1));
            result.Add((match, specials[match]));
            i += match.Length;
            start = i;
        }
        if (start < text.Length) result.Add((text[start..], -1));
        return result;
    }
}
