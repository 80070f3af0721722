using ManagedTensor.Models.Data;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Tokenizers;

namespace ManagedTensor.Models.Whisper;

/// <summary>
/// Whisper's tokens: a GPT-2 byte-level BPE (<see cref="BpeTokenizer"/>, the project's one BPE) followed by special
/// tokens in a fixed order: &lt;|endoftext|&gt;, &lt;|startoftranscript|&gt;, one &lt;|xx|&gt; per language,
/// &lt;|translate|&gt;, &lt;|transcribe|&gt;, &lt;|startoflm|&gt;, &lt;|startofprev|&gt;, &lt;|nospeech|&gt;,
/// &lt;|notimestamps|&gt;, then 1501 timestamps &lt;|0.00|&gt; .. &lt;|30.00|&gt; in steps of 0.02 s.
/// A transcript is decoded after the prompt &lt;|startoftranscript|&gt; &lt;|en|&gt; &lt;|transcribe|&gt;
/// [&lt;|notimestamps|&gt;] and ends with &lt;|endoftext|&gt;. The specials are found by name in the vocabulary
/// (tokenizer.json or added_tokens.json), so English-only (51,864 tokens) and multilingual (51,865) models both work;
/// <see cref="English"/> builds the English-only layout on GPT-2's own files, which is exactly whisper's gpt2 vocabulary.
/// </summary>
public sealed class WhisperTokenizer
{
    /// <summary>openai/whisper's LANGUAGES, in token order (99 of them up to large-v2).</summary>
    public static readonly string[] Languages =
    [
        "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it", "id", "hi", "fi", "vi",
        "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk",
        "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw",
        "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo",
        "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su",
    ];

    /// <summary>Seconds per timestamp step (20 ms: two encoder frames).</summary>
    public const double TimePrecision = 0.02;
    public const int TimestampCount = 1501;

    /// <summary>Tokens of the English-only vocabulary (<see cref="English"/>).</summary>
    public const int EnglishVocabSize = 51864;

    public WhisperTokenizer(ITokenizer text)
    {
        Text = text;
        int Need(string s) => text.TokenId(s) ?? throw new UserErrorException($"Whisper tokenizer: the vocabulary has no {s} token");
        EndOfText = Need("<|endoftext|>");
        StartOfTranscript = Need("<|startoftranscript|>");
        Translate = Need("<|translate|>");
        Transcribe = Need("<|transcribe|>");
        NoTimestamps = Need("<|notimestamps|>");
        TimestampBegin = NoTimestamps + 1;
        if (text.TokenId("<|0.00|>") is int zero && zero != TimestampBegin)
            throw new UserErrorException($"Whisper tokenizer: <|0.00|> is token {zero}, expected {TimestampBegin} (right after <|notimestamps|>)");
    }

    public ITokenizer Text { get; }
    public int EndOfText { get; }
    public int StartOfTranscript { get; }
    public int Translate { get; }
    public int Transcribe { get; }
    public int NoTimestamps { get; }
    public int TimestampBegin { get; }
    public int VocabSize => Text.VocabSize;

    /// <summary>Whether <paramref name="id"/> is a timestamp token.</summary>
    public bool IsTimestamp(int id) => id >= TimestampBegin && id < TimestampBegin + TimestampCount;

    /// <summary>Seconds of a timestamp token.</summary>
    public double TimeOf(int id) => (id - TimestampBegin) * TimePrecision;

    /// <summary>The token of language <paramref name="code"/> ("en"), or an error listing what the vocabulary has.</summary>
    public int Language(string code) => Text.TokenId($"<|{code}|>") is int id && id > StartOfTranscript && id < Translate
        ? id : throw new UserErrorException($"Whisper tokenizer: no language token <|{code}|> (codes are openai/whisper's, e.g. en, de, fr)");

    /// <summary>Whether the vocabulary is multilingual (51,865 tokens or more, whisper's test); English-only models take no language or task token.</summary>
    public bool Multilingual => VocabSize >= 51865;

    /// <summary>
    /// The decoder prompt, whisper's sot_sequence: start of transcript, then for a multilingual model the language
    /// (default English) and the task; then no-timestamps unless timestamps are wanted.
    /// </summary>
    public int[] Prompt(string? language, bool timestamps, bool translate = false)
    {
        var p = new List<int> { StartOfTranscript };
        if (Multilingual) p.AddRange([Language(language ?? "en"), translate ? Translate : Transcribe]);
        if (!timestamps) p.Add(NoTimestamps);
        return [.. p];
    }

    /// <summary>Token ids of transcript text (a leading space, as Whisper's training text has: " And so my fellow ...").</summary>
    public List<int> EncodeText(string text) => Text.Encode(" " + text.Trim(), bos: false, eos: false, parseSpecial: false);

    /// <summary>The text of the ordinary tokens of <paramref name="tokens"/> (specials and timestamps skipped), trimmed.</summary>
    public string DecodeText(IEnumerable<int> tokens) => Text.DecodeText(tokens.Where(t => t < EndOfText).ToList()).Trim();

    /// <summary>
    /// Whisper's English-only vocabulary on GPT-2's BPE (<paramref name="gpt2"/>, 50,257 tokens ending in
    /// &lt;|endoftext|&gt; = 50256): &lt;|startoftranscript|&gt; = 50257, &lt;|en|&gt; = 50258, ..., &lt;|transcribe|&gt; = 50358,
    /// &lt;|notimestamps|&gt; = 50362, &lt;|0.00|&gt; = 50363, ..., 51,864 tokens in all (whisper-tiny.en's layout).
    /// </summary>
    public static WhisperTokenizer English(BpeTokenizer gpt2)
    {
        var m = gpt2.Model;
        if (m.Tokens.Length != Gpt2Tokenizer.VocabSize || m.Tokens[^1] != "<|endoftext|>")
            throw new ArgumentException($"Whisper's English vocabulary extends GPT-2's {Gpt2Tokenizer.VocabSize} tokens ending in <|endoftext|>; got {m.Tokens.Length}");
        var specials = new List<string> { "<|startoftranscript|>" };
        specials.AddRange(Languages.Select(l => $"<|{l}|>"));
        specials.AddRange(["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]);
        specials.AddRange(Enumerable.Range(0, TimestampCount).Select(i => $"<|{(i * TimePrecision).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture)}|>"));
        var added = new List<(string, int, bool)>(m.Added);
        for (int i = 0; i < specials.Count; i++) added.Add((specials[i], m.Tokens.Length + i, true));
        return new WhisperTokenizer(new BpeTokenizer(m with
        {
            Tokens = [.. m.Tokens, .. specials],
            Added = added,
            Kind = "whisper-en",
            Json = """{"kind":"whisper-en"}""",
        }));
    }

    /// <summary>The English-only tokenizer on the repository's GPT-2 files (data/encoder.json, data/vocab.bpe).</summary>
    public static WhisperTokenizer EnglishFromDataFolder() => English(Gpt2Tokenizer.FromDataFolder());

    /// <summary>
    /// The tokenizer of a Hugging Face Whisper directory: tokenizer.json, else vocab.json + merges.txt (GPT-2's file
    /// formats) with added_tokens.json for the specials (else the English-only layout when the base vocabulary is GPT-2's);
    /// with none of them, a config.json of vocab_size 51,864 gets the English-only tokenizer on data/'s GPT-2 files.
    /// </summary>
    public static WhisperTokenizer Load(string dir)
    {
        if (File.Exists(Path.Combine(dir, HfTokenizer.TokenizerFile))) return new WhisperTokenizer(HfTokenizer.Load(dir).Tokenizer);
        string vocab = Path.Combine(dir, "vocab.json"), merges = Path.Combine(dir, "merges.txt"), addedPath = Path.Combine(dir, "added_tokens.json");
        if (!File.Exists(vocab) || !File.Exists(merges))
        {
            // A model `mt transcribe train` wrote: English-only vocabulary, GPT-2's files from data/.
            if (HfJson.Load(Path.Combine(dir, HfCheckpoint.ConfigFile)).GetInt("vocab_size", 0) == EnglishVocabSize) return EnglishFromDataFolder();
            throw new InvalidModelFileException(dir, "no tokenizer.json, and no vocab.json + merges.txt: the Whisper tokenizer is missing");
        }
        var baseTok = Gpt2Tokenizer.FromFiles(vocab, merges);
        if (!File.Exists(addedPath)) return English(baseTok);
        var json = HfJson.Load(addedPath);
        var byId = json.Root.EnumerateObject().Select(e => (Token: e.Name, Id: json.AsInt(e.Name, e.Value))).OrderBy(p => p.Id).ToList();
        var m = baseTok.Model;
        var tokens = m.Tokens.ToList();
        var added = m.Added.ToList();
        foreach (var (token, id) in byId)
        {
            if (id < tokens.Count) continue; // <|endoftext|> is already in GPT-2's vocabulary
            if (id != tokens.Count) throw json.Error($"'{token}' has id {id}, expected {tokens.Count}: added token ids must follow the vocabulary without gaps");
            tokens.Add(token);
            added.Add((token, id, true));
        }
        return new WhisperTokenizer(new BpeTokenizer(m with { Tokens = [.. tokens], Added = added, Kind = "hf", Json = null }));
    }
}
