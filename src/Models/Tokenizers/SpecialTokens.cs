namespace ManagedTensor.Models.Tokenizers;

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
