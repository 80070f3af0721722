using System.Text.Json;
using ManagedTensor.Models.Tokenizers;

namespace ManagedTensor.Models.Data;

/// <summary>
/// GPT-2's byte-level BPE (50,257 tokens) from OpenAI's encoder.json (token -> id) and vocab.bpe (merges, in rank
/// order), as the one BPE implementation, <see cref="BpeTokenizer"/>: every UTF-8 byte is a printable character
/// (bytes_to_unicode), text is split by GPT-2's pre-tokenization regex, and merges apply lowest rank first. No
/// prefix space and no BOS are added, so "Hello world" encodes to [15496, 995] as with OpenAI's encoder.
/// &lt;|endoftext|&gt; (50256) is EOS and a special token (matched whole only with parseSpecial).
/// </summary>
public static class Gpt2Tokenizer
{
    public const int VocabSize = 50257, EndOfText = 50256;

    public static BpeTokenizer FromFiles(string encoderJson, string vocabBpe)
    {
        Dictionary<string, int> vocab;
        try { vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(encoderJson)) ?? []; }
        catch (JsonException e) { throw new InvalidDataException($"{encoderJson}: not a GPT-2 encoder.json (token -> id): {e.Message}"); }
        var tokens = new string[vocab.Count];
        foreach (var (token, id) in vocab)
        {
            if ((uint)id >= (uint)tokens.Length || tokens[id] is not null)
                throw new InvalidDataException($"{encoderJson}: id {id} of '{token}' is repeated or outside 0..{tokens.Length - 1}");
            tokens[id] = token;
        }
        // vocab.bpe: a "#version" line, then one merge "left right" per line in rank order.
        var merges = File.ReadLines(vocabBpe).Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal)).Select((l, i) =>
        {
            int space = l.IndexOf(' ');
            if (space <= 0 || space == l.Length - 1) throw new InvalidDataException($"{vocabBpe}: merge {i} '{l}' is not two tokens separated by a space");
            return (l[..space], l[(space + 1)..]);
        }).ToArray();
        bool hasEot = tokens.Length > EndOfText && tokens[EndOfText] == "<|endoftext|>";
        return new BpeTokenizer(new BpeModel
        {
            Tokens = tokens,
            Merges = merges,
            Added = hasEot ? [("<|endoftext|>", EndOfText, true)] : [],
            PreTokenizers = [new PreTokenizer.ByteLevel(AddPrefixSpace: false, UseRegex: true)],
            ByteLevel = true,
            Eos = hasEot ? EndOfText : -1,
            Kind = "gpt2",
            Json = """{"kind":"gpt2"}""",
        });
    }

    /// <summary>The copy in the repository's data/ folder (see <see cref="DataFiles.Find"/>).</summary>
    public static BpeTokenizer FromDataFolder() => FromFiles(DataFiles.Find("data/encoder.json"), DataFiles.Find("data/vocab.bpe"));
}
