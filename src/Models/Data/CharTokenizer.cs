using System.Text.Json;

namespace ManagedTensor.Models.Data;

/// <summary>
/// Character-level tokenizer as in nanoGPT's shakespeare_char: the vocabulary is the sorted set of
/// distinct characters of the training text (ordinal order, like Python's sorted(set(text))), and a
/// character's id is its rank. Works on UTF-16 code units, which is exact for ASCII corpora.
/// There is no BOS or EOS.
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
    public int Bos => -1;
    public int Eos => -1;
    public bool AddBos => false;

    /// <summary>The vocabulary: character i has id i.</summary>
    public string Chars => _chars;

    /// <summary>One id per character (no BOS or EOS exist, so those flags change nothing; nor does parseSpecial).</summary>
    public List<int> Encode(string text, bool bos = true, bool eos = false, bool parseSpecial = false)
    {
        var ids = new List<int>(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            if (!_ids.TryGetValue(text[i], out int id))
                throw new ArgumentException($"character {Show(text[i])} at position {i} is not in the {VocabSize}-character vocabulary");
            ids.Add(id);
        }
        return ids;
    }

    public string Decode(IReadOnlyList<int> ids)
    {
        var sb = new System.Text.StringBuilder();
        foreach (int id in ids) sb.Append(TokenText(id));
        return sb.ToString();
    }

    public ReadOnlySpan<byte> DecodeBytes(int prev, int token) => System.Text.Encoding.UTF8.GetBytes(TokenText(token));

    public int? TokenId(string piece) => piece.Length == 1 && _ids.TryGetValue(piece[0], out int id) ? id : null;

    public string TokenText(int id) =>
        (uint)id < (uint)_chars.Length ? _chars[id].ToString() : throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside the {VocabSize}-character vocabulary");

    public string ToJson() => JsonSerializer.Serialize(new { kind = Kind, chars = _chars });

    private static string Show(char c) => char.IsControl(c) ? $"U+{(int)c:X4}" : $"'{c}'";
}
