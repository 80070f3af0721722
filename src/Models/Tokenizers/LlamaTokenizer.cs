using System.Text;
using ManagedTensor.Models.Formats;

namespace ManagedTensor.Models.Tokenizers;

/// <summary>
/// A sentencepiece-style BPE vocabulary as llama2.c uses it: each token has a string and a merge score.
/// Encoding (llama2.c's encode):
///   1. prepend a space (sentencepiece's dummy prefix) unless the text is empty;
///   2. each UTF-8 character becomes its token, or, if it has none, one byte-fallback token per byte
///      (&lt;0xXX&gt;, ids 3 + byte in llama vocabularies);
///   3. repeatedly merge the adjacent pair whose concatenation is a token with the highest score, until none is.
/// Decoding maps byte tokens back to raw bytes and drops the leading space after BOS.
/// Token strings use ' ' where sentencepiece writes U+2581 (llama2.c's export replaces it; GGUF vocabularies are converted on load).
/// Special (control) tokens, given by id, and BOS/EOS are matched whole in the text when encoding with parseSpecial; as in llama.cpp,
/// the text after each special token gets the dummy-prefix space again.
/// </summary>
public sealed class LlamaTokenizer : ITokenizer
{
    /// <summary>"llama2c" (tokenizer.bin) or "gguf" (tokenizer.ggml.*): where the vocabulary came from.</summary>
    public string Kind { get; init; } = "llama2c";

    public string[] Vocab { get; }
    public float[] Scores { get; }
    public int Bos { get; }
    public int Eos { get; }
    public bool AddBos { get; }

    /// <summary>Control tokens (string -> id) that <see cref="Encode"/> with parseSpecial matches in the text.</summary>
    public IReadOnlyDictionary<string, int> Specials { get; }

    private readonly byte[][] _bytes;                // token strings as UTF-8 (byte tokens decoded to their byte)
    private readonly Dictionary<string, int> _ids;
    private readonly int[] _byteTokens = new int[256]; // id of <0xXX>, -1 if absent

    public int VocabSize => Vocab.Length;

    public LlamaTokenizer(string[] vocab, float[] scores, int bos = 1, int eos = 2, IEnumerable<int>? specialIds = null, bool addBos = true)
    {
        if (vocab.Length != scores.Length) throw new ArgumentException($"{vocab.Length} tokens but {scores.Length} scores");
        Vocab = vocab; Scores = scores; Bos = bos; Eos = eos; AddBos = addBos;
        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        // BOS and EOS always count: chat templates write their strings (bos_token, eos_token) into the prompt text.
        foreach (int id in new[] { bos, eos }.Where(i => (uint)i < (uint)vocab.Length).Concat(specialIds ?? []))
        {
            if ((uint)id >= (uint)vocab.Length) throw new ArgumentOutOfRangeException(nameof(specialIds), $"special token id {id} outside the {vocab.Length}-token vocabulary");
            if (vocab[id].Length > 0) specials.TryAdd(vocab[id], id);
        }
        Specials = specials;
        _ids = new Dictionary<string, int>(vocab.Length, StringComparer.Ordinal);
        Array.Fill(_byteTokens, -1);
        _bytes = new byte[vocab.Length][];
        for (int i = 0; i < vocab.Length; i++)
        {
            _ids.TryAdd(vocab[i], i); // first id wins for duplicate strings, like llama2.c's sorted bsearch on unique pieces
            if (ParseByteToken(vocab[i]) is int b)
            {
                if (_byteTokens[b] < 0) _byteTokens[b] = i;
                _bytes[i] = [(byte)b];
            }
            else _bytes[i] = Encoding.UTF8.GetBytes(vocab[i]);
        }
    }

    private static int? ParseByteToken(string s) =>
        s.Length == 6 && s.StartsWith("<0x", StringComparison.Ordinal) && s[5] == '>' &&
        int.TryParse(s.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out int b) ? b : null;

    /// <summary>
    /// llama2.c's tokenizer.bin: int32 max_token_length, then per token float32 score, int32 byte length, bytes.
    /// The token count is not stored; it comes from the model (vocab_size).
    /// </summary>
    public static LlamaTokenizer LoadLlama2c(string path, int vocabSize)
    {
        if (vocabSize <= 0) throw new ArgumentOutOfRangeException(nameof(vocabSize), $"vocab size {vocabSize} must be positive");
        using var f = new ModelFile(path);
        int maxLen = f.ReadI32("max_token_length");
        if (maxLen <= 0 || maxLen > 1 << 16) throw f.Error($"max_token_length = {maxLen} is outside [1, 65536]");
        // Every token takes at least 8 bytes; a vocab size the file cannot hold is refused before allocating.
        if (vocabSize > f.Remaining / 8) throw f.Error($"{vocabSize} tokens need at least {8L * vocabSize} bytes, only {f.Remaining} follow the header");
        var vocab = new string[vocabSize];
        var scores = new float[vocabSize];
        for (int i = 0; i < vocabSize; i++)
        {
            scores[i] = f.ReadF32($"token {i} score");
            int len = f.ReadI32($"token {i} length");
            if (len < 0 || len > maxLen) throw f.Error($"token {i} length = {len} is outside [0, max_token_length {maxLen}]");
            vocab[i] = f.ReadUtf8(len, $"token {i} bytes");
            if (!float.IsFinite(scores[i])) throw f.Error($"token {i} score = {scores[i]} is not finite");
        }
        if (f.Remaining != 0) throw f.Error($"{f.Remaining} bytes follow the {vocabSize} tokens: vocabulary size mismatch with the model, or not a llama2.c tokenizer");
        return new LlamaTokenizer(vocab, scores) { Kind = "llama2c" };
    }

    public int? TokenId(string piece) => _ids.TryGetValue(piece, out int id) ? id : null;

    public string TokenText(int id) => Vocab[id];

    /// <summary>Token ids of <paramref name="text"/>, optionally with BOS first and EOS last (and special tokens matched whole with <paramref name="parseSpecial"/>).</summary>
    public List<int> Encode(string text, bool bos = true, bool eos = false, bool parseSpecial = false)
    {
        var tokens = new List<int>();
        if (bos) tokens.Add(Bos);
        if (!parseSpecial) tokens.AddRange(EncodeText(text));
        else
            foreach (var (piece, id) in SpecialTokens.Split(text, Specials))
                if (id >= 0) tokens.Add(id);
                else tokens.AddRange(EncodeText(piece));
        if (eos) tokens.Add(Eos);
        return tokens;
    }

    /// <summary>llama2.c's encode of plain text: dummy-prefix space, characters or byte fallback, then best-score merges (<see cref="SentencePieceMerges"/>).</summary>
    private List<int> EncodeText(string text)
    {
        var pieces = new List<int>();
        if (text.Length > 0 && TokenId(" ") is int space) pieces.Add(space);

        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in text.EnumerateRunes())
        {
            if (TokenId(rune.ToString()) is int id) { pieces.Add(id); continue; }
            int n = rune.EncodeToUtf8(utf8);
            foreach (byte b in utf8[..n])
                pieces.Add(_byteTokens[b] >= 0 ? _byteTokens[b] : throw new UserErrorException($"the text cannot be encoded: character '{rune}' has no token and the vocabulary has no byte fallback for 0x{b:X2}"));
        }
        return SentencePieceMerges.Apply(pieces, (left, right) => TokenId(Vocab[left] + Vocab[right]), Scores);
    }

    /// <summary>The bytes of <paramref name="token"/> following <paramref name="prev"/> (the space after BOS is dropped).</summary>
    public ReadOnlySpan<byte> DecodeBytes(int prev, int token)
    {
        if ((uint)token >= (uint)_bytes.Length) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} is outside the {_bytes.Length}-token vocabulary");
        var b = _bytes[token];
        return prev == Bos && b.Length > 0 && b[0] == (byte)' ' ? b.AsSpan(1) : b;
    }

    /// <summary>The text of a token sequence (starting after BOS when the first id is BOS).</summary>
    public string Decode(IReadOnlyList<int> tokens) => this.DecodeText(tokens);
}
