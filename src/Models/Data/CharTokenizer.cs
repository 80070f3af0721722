using System.Text.Json;

namespace ManagedTensor.Models.Data;

/// <summary>
/// Character-level tokenizer as in nanoGPT's shakespeare_char: the vocabulary is the sorted set of
/// distinct characters of the training text (ordinal order, like Python's sorted(set(text))), and a
/// character's id is its rank. Works on UTF-16 code units, which is exact for ASCII corpora.
/// </summary>
public sealed class CharTokenizer : ITokenizer
{
    private readonly string _chars;
    private readonly Dictionary<char, int> _ids;

    public CharTokenizer(string chars)
    {
        if (chars.Length == 0) throw new ArgumentException("a character vocabulary needs at least one character");
        _chars = chars;
        _ids = new Dictionary<char, int>(chars.Length);
        for (int i = 0; i < chars.Length; i++)
        {
            if (!_ids.TryAdd(chars[i], i)) throw new ArgumentException($"character {Show(chars[i])} appears twice in the vocabulary");
        }
    }

    public static CharTokenizer FromText(string text)
    {
        var distinct = text.Distinct().Order().ToArray();
        return new CharTokenizer(new string(distinct));
    }

    public static CharTokenizer FromJson(JsonElement e)
    {
        if (!e.TryGetProperty("chars", out var c) || c.ValueKind != JsonValueKind.String)
            throw new InvalidDataException("char tokenizer JSON needs a \"chars\" string");
        return new CharTokenizer(c.GetString()!);
    }

    public string Kind => "char";
    public int VocabSize => _chars.Length;

    /// <summary>The vocabulary: character i has id i.</summary>
    public string Chars => _chars;

    public int[] Encode(string text)
    {
        var ids = new int[text.Length];
        for (int i = 0; i < text.Length; i++)
        {
            if (!_ids.TryGetValue(text[i], out ids[i]))
                throw new ArgumentException($"character {Show(text[i])} at position {i} is not in the {VocabSize}-character vocabulary");
        }
        return ids;
    }

    public string Decode(IEnumerable<int> ids)
    {
        var sb = new System.Text.StringBuilder();
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_chars.Length) throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id outside the {VocabSize}-character vocabulary");
            sb.Append(_chars[id]);
        }
        return sb.ToString();
    }

    public string ToJson() => JsonSerializer.Serialize(new { kind = Kind, chars = _chars });

    private static string Show(char c) => char.IsControl(c) ? $"U+{(int)c:X4}" : $"'{c}'";
}
