using System.Text;
using System.Text.RegularExpressions;

namespace ManagedTensor.Models.Tokenizers;

/// <summary>One normalizer step of a tokenizer.json pipeline, applied to each piece of text between added tokens.</summary>
public abstract record TextNormalizer
{
    public abstract string Apply(string s);

    /// <summary>Prepends a string to non-empty text (Llama 2's "Prepend ▁").</summary>
    public sealed record Prepend(string Prefix) : TextNormalizer
    {
        public override string Apply(string s) => s.Length == 0 ? s : Prefix + s;
    }

    /// <summary>Replaces every occurrence of a string (Llama 2's " " -> "▁").</summary>
    public sealed record Replace(string Pattern, string Content) : TextNormalizer
    {
        public override string Apply(string s) => Pattern.Length == 0 ? s : s.Replace(Pattern, Content, StringComparison.Ordinal);
    }

    /// <summary>Unicode normalization (NFC, NFD, NFKC, NFKD).</summary>
    public sealed record Unicode(NormalizationForm Form) : TextNormalizer
    {
        public override string Apply(string s) => s.Normalize(Form);
    }

    public sealed record Lowercase : TextNormalizer
    {
        public override string Apply(string s) => s.ToLowerInvariant();
    }
}

/// <summary>One pre-tokenizer step: splits each piece of text into smaller words (BPE never merges across words).</summary>
public abstract record PreTokenizer
{
    /// <param name="atStart">whether the piece begins the whole input (Metaspace's prepend_scheme "first")</param>
    public abstract IEnumerable<string> Split(string piece, bool atStart);

    /// <summary>The matches of a regular expression and the text between them, each its own word (HF's Split, behavior "Isolated").</summary>
    public sealed record RegexSplit(Regex Pattern) : PreTokenizer
    {
        public override IEnumerable<string> Split(string piece, bool atStart)
        {
            int at = 0;
            for (var m = Pattern.Match(piece); m.Success; m = m.NextMatch())
            {
                if (m.Length == 0) continue;
                if (m.Index > at) yield return piece[at..m.Index];
                yield return m.Value;
                at = m.Index + m.Length;
            }
            if (at < piece.Length) yield return piece[at..];
        }
    }

    /// <summary>
    /// GPT-2's byte level: optionally a leading space and GPT-2's word regex, then every UTF-8 byte of the word written as
    /// one printable character (<see cref="BpeTokenizer.ByteToChar"/>), so any text is covered by 256 base symbols.
    /// </summary>
    public sealed record ByteLevel(bool AddPrefixSpace, bool UseRegex) : PreTokenizer
    {
        /// <summary>GPT-2's pre-tokenization pattern (contractions, letters, digits, other, whitespace).</summary>
        public static readonly Regex Gpt2Pattern = new(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.Compiled);

        public override IEnumerable<string> Split(string piece, bool atStart)
        {
            if (AddPrefixSpace && !piece.StartsWith(' ')) piece = " " + piece;
            var words = UseRegex ? new RegexSplit(Gpt2Pattern).Split(piece, atStart) : [piece];
            foreach (var w in words) yield return BpeTokenizer.ToByteChars(w);
        }
    }

    /// <summary>Sentencepiece's word marker: spaces become <paramref name="Replacement"/>, one is prepended, and words optionally split before each marker.</summary>
    public sealed record Metaspace(char Replacement, MetaspacePrepend Prepend, bool SplitWords) : PreTokenizer
    {
        public override IEnumerable<string> Split(string piece, bool atStart)
        {
            string s = piece.Replace(' ', Replacement);
            if (!s.StartsWith(Replacement) && (Prepend == MetaspacePrepend.Always || (Prepend == MetaspacePrepend.First && atStart))) s = Replacement + s;
            if (!SplitWords) { yield return s; yield break; }
            int start = 0;
            for (int i = 1; i < s.Length; i++)
                if (s[i] == Replacement) { yield return s[start..i]; start = i; }
            if (start < s.Length) yield return s[start..];
        }
    }
}

public enum MetaspacePrepend { Always, First, Never }

/// <summary>Everything a <see cref="BpeTokenizer"/> is built from (what tokenizer.json describes).</summary>
public sealed record BpeModel
{
    /// <summary>Token strings by id (byte-level vocabularies write bytes as GPT-2's printable characters, sentencepiece ones '▁' for spaces).</summary>
    public required string[] Tokens { get; init; }
    /// <summary>Merges in priority order (rank = index): the pair's two token strings.</summary>
    public required (string Left, string Right)[] Merges { get; init; }
    /// <summary>Added tokens (content, id, special): matched whole in the text before normalization.</summary>
    public IReadOnlyList<(string Content, int Id, bool Special)> Added { get; init; } = [];
    public IReadOnlyList<TextNormalizer> Normalizers { get; init; } = [];
    public IReadOnlyList<PreTokenizer> PreTokenizers { get; init; } = [];
    /// <summary>Symbols are GPT-2 byte characters (decoding maps them back to bytes); otherwise Unicode characters.</summary>
    public bool ByteLevel { get; init; }
    /// <summary>A character missing from the vocabulary becomes its UTF-8 bytes as &lt;0xXX&gt; tokens.</summary>
    public bool ByteFallback { get; init; }
    /// <summary>A word that is itself a token is emitted whole, without merging (Llama 3).</summary>
    public bool IgnoreMerges { get; init; }
    public int Unk { get; init; } = -1;
    public bool FuseUnk { get; init; }
    /// <summary>The sentencepiece word marker to print as a space when decoding (null: none).</summary>
    public char? SpaceMarker { get; init; }
    /// <summary>Drop one leading space from the first decoded token (HF's Strip decoder / Metaspace prepend).</summary>
    public bool StripLeadingSpace { get; init; }
    public int Bos { get; init; } = -1;
    public int Eos { get; init; } = -1;
    public bool AddBos { get; init; }
    /// <summary>Names the tokenizer (<see cref="ITokenizer.Kind"/>): "hf" for a tokenizer.json, "gpt2" for GPT-2's files.</summary>
    public string Kind { get; init; } = "hf";
    /// <summary>What a training checkpoint stores to rebuild it (null: not storable).</summary>
    public string? Json { get; init; }
}

/// <summary>
/// Hugging Face's BPE model (tokenizers' models/bpe), as tokenizer.json files describe it:
///   1. added tokens are cut out of the text first (special ones only when parsing specials; the rest always);
///   2. each remaining piece is normalized (Prepend, Replace, NFC, ...), then pre-tokenized into words (Split by a regex,
///      ByteLevel, Metaspace);
///   3. each word starts as one symbol per character (a byte character for byte-level vocabularies; a missing character
///      becomes &lt;0xXX&gt; byte tokens with byte_fallback, or unk), and the adjacent pair with the lowest merge rank
///      is merged until no pair has a rank (ties: leftmost). With ignore_merges a word that is a token is taken whole.
/// Unlike llama2.c's tokenizer (<see cref="LlamaTokenizer"/>), merges are ranked pairs, not scores of the merged piece;
/// sentencepiece-converted vocabularies order their merges by those scores, so the two agree on such vocabularies.
/// A character with no token, no byte fallback and no unk is dropped, as HF does.
/// </summary>
public sealed class BpeTokenizer : ITokenizer
{
    private readonly BpeModel _m;
    private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
    private readonly Dictionary<(int, int), (int Rank, int Merged)> _merges = [];
    private readonly Dictionary<string, int> _specials = new(StringComparer.Ordinal), _plainAdded = new(StringComparer.Ordinal);
    private readonly HashSet<int> _addedIds = [];
    private readonly byte[][] _bytes;           // id -> the bytes it decodes to
    private readonly int[] _byteTokens = new int[256];
    private readonly Dictionary<string, int[]> _wordCache = new(StringComparer.Ordinal);

    public string Kind => _m.Kind;
    public int VocabSize => _m.Tokens.Length;
    public int Bos => _m.Bos;
    public int Eos => _m.Eos;
    public bool AddBos => _m.AddBos && _m.Bos >= 0;
    public BpeModel Model => _m;

    public BpeTokenizer(BpeModel m)
    {
        _m = m;
        for (int i = 0; i < m.Tokens.Length; i++)
            if (m.Tokens[i] is { } t) _ids.TryAdd(t, i);
        for (int r = 0; r < m.Merges.Length; r++)
        {
            var (a, b) = m.Merges[r];
            if (!_ids.TryGetValue(a, out int ia) || !_ids.TryGetValue(b, out int ib) || !_ids.TryGetValue(a + b, out int im))
                throw new ArgumentException($"merge {r} ('{a}', '{b}') refers to a token missing from the vocabulary");
            _merges.TryAdd((ia, ib), (r, im)); // a repeated pair keeps its first (best) rank
        }
        foreach (var (content, id, special) in m.Added)
        {
            if ((uint)id >= (uint)m.Tokens.Length) throw new ArgumentException($"added token '{content}' has id {id}, outside the {m.Tokens.Length}-token vocabulary");
            (special ? _specials : _plainAdded).TryAdd(content, id);
            _addedIds.Add(id);
        }
        Array.Fill(_byteTokens, -1);
        _bytes = new byte[m.Tokens.Length][];
        for (int i = 0; i < m.Tokens.Length; i++)
        {
            string t = m.Tokens[i] ?? "";
            if (_addedIds.Contains(i)) _bytes[i] = Encoding.UTF8.GetBytes(t);
            else if (ParseByteToken(t) is byte b) { _bytes[i] = [b]; if (_byteTokens[b] < 0) _byteTokens[b] = i; }
            else if (m.ByteLevel) _bytes[i] = FromByteChars(t);
            else _bytes[i] = Encoding.UTF8.GetBytes(m.SpaceMarker is char c ? t.Replace(c, ' ') : t);
        }
    }

    private static byte? ParseByteToken(string s) =>
        s.Length == 6 && s.StartsWith("<0x", StringComparison.Ordinal) && s[5] == '>' &&
        byte.TryParse(s.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b) ? b : null;

    public int? TokenId(string piece) => _ids.TryGetValue(piece, out int id) ? id : null;

    public string TokenText(int id) => _m.Tokens[id];

    /// <summary>Whether <paramref name="id"/> is an added special token (control tokens like &lt;|eot_id|&gt;).</summary>
    public bool IsSpecial(int id) => _addedIds.Contains(id) && _specials.ContainsValue(id);

    public List<int> Encode(string text, bool bos = true, bool eos = false, bool parseSpecial = false)
    {
        var ids = new List<int>();
        if (bos && Bos >= 0) ids.Add(Bos);
        int offset = 0;
        // Added tokens that are not special are always matched; special ones only when asked (chat templates).
        var cut = parseSpecial ? _specials.Concat(_plainAdded).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.First().Value) : _plainAdded;
        foreach (var (piece, id) in SpecialTokens.Split(text, cut))
        {
            if (id >= 0) ids.Add(id);
            else EncodePiece(piece, offset == 0, ids);
            offset += piece.Length;
        }
        if (eos && Eos >= 0) ids.Add(Eos);
        return ids;
    }

    private void EncodePiece(string piece, bool atStart, List<int> ids)
    {
        foreach (var n in _m.Normalizers) piece = n.Apply(piece);
        IEnumerable<string> words = [piece];
        foreach (var p in _m.PreTokenizers)
        {
            var pre = p;
            words = words.SelectMany(w => pre.Split(w, atStart)).ToList();
        }
        foreach (var w in words)
            if (w.Length > 0) ids.AddRange(EncodeWord(w));
    }

    /// <summary>BPE on one word: characters (or byte fallback / unk), then lowest-rank merges first.</summary>
    private int[] EncodeWord(string word)
    {
        if (_wordCache.TryGetValue(word, out var cached)) return cached;
        if (_m.IgnoreMerges && _ids.TryGetValue(word, out int whole)) return Remember(word, [whole]);
        var symbols = new List<int>(word.Length);
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in word.EnumerateRunes())
        {
            if (_ids.TryGetValue(rune.ToString(), out int id)) { symbols.Add(id); continue; }
            int n = rune.EncodeToUtf8(utf8);
            if (_m.ByteFallback && utf8[..n].ToArray().All(b => _byteTokens[b] >= 0))
                foreach (byte b in utf8[..n]) symbols.Add(_byteTokens[b]);
            else if (_m.Unk >= 0 && !(_m.FuseUnk && symbols.Count > 0 && symbols[^1] == _m.Unk)) symbols.Add(_m.Unk);
        }
        while (symbols.Count > 1)
        {
            int best = -1, bestRank = int.MaxValue, merged = -1;
            for (int i = 0; i + 1 < symbols.Count; i++)
                if (_merges.TryGetValue((symbols[i], symbols[i + 1]), out var m) && m.Rank < bestRank)
                {
                    best = i; bestRank = m.Rank; merged = m.Merged;
                }
            if (best < 0) break;
            symbols[best] = merged;
            symbols.RemoveAt(best + 1);
        }
        return Remember(word, symbols.ToArray());
    }

    private int[] Remember(string word, int[] ids)
    {
        if (_wordCache.Count < 1 << 16) _wordCache[word] = ids;
        return ids;
    }

    public ReadOnlySpan<byte> DecodeBytes(int prev, int token)
    {
        if ((uint)token >= (uint)_bytes.Length) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} is outside the {_bytes.Length}-token vocabulary");
        var b = _bytes[token];
        bool first = prev < 0 || prev == Bos;
        return _m.StripLeadingSpace && first && b.Length > 0 && b[0] == (byte)' ' ? b.AsSpan(1) : b;
    }

    public string Decode(IReadOnlyList<int> tokens) => this.DecodeText(tokens);

    /// <summary>The checkpoint form of <see cref="BpeModel.Json"/> (GPT-2's is {"kind":"gpt2"}); other vocabularies are not stored.</summary>
    public string ToJson() => _m.Json ?? throw new NotSupportedException($"a {Kind} tokenizer is not stored in training checkpoints (char and gpt2 are)");

    // ---- GPT-2's byte <-> printable character table ----

    /// <summary>
    /// GPT-2's bytes_to_unicode: the printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves; the other 68 bytes
    /// map to U+0100, U+0101, ... in order (so a space is 'Ġ' = U+0120 and a newline 'Ċ').
    /// </summary>
    public static readonly char[] ByteToChar = BuildByteTable();
    private static readonly Dictionary<char, byte> CharToByte = Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    private static char[] BuildByteTable()
    {
        var t = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            t[b] = printable ? (char)b : (char)(256 + n++);
        }
        return t;
    }

    public static string ToByteChars(string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>The bytes a byte-level token string stands for (a character outside the table contributes its UTF-8).</summary>
    public static byte[] FromByteChars(string s)
    {
        var o = new List<byte>(s.Length);
        foreach (char c in s)
            if (CharToByte.TryGetValue(c, out byte b)) o.Add(b);
            else o.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
        return o.ToArray();
    }
}
