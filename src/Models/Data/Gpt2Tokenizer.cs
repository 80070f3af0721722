using Microsoft.ML.Tokenizers;

namespace ManagedTensor.Models.Data;

/// <summary>
/// GPT-2's byte-level BPE (50,257 tokens) read from encoder.json (token -> id) and vocab.bpe (merges),
/// through Microsoft.ML.Tokenizers' CodeGen tokenizer, which implements the same byte-to-unicode
/// mapping, pre-tokenization regex and merge order. No prefix space and no special tokens are added,
/// so "Hello world" encodes to [15496, 995] as with OpenAI's encoder.
/// </summary>
public sealed class Gpt2Tokenizer : ITokenizer
{
    private readonly Tokenizer _bpe;

    private Gpt2Tokenizer(Tokenizer bpe) => _bpe = bpe;

    public static Gpt2Tokenizer FromFiles(string encoderJson, string vocabBpe)
    {
        using var vocab = File.OpenRead(encoderJson);
        using var merges = File.OpenRead(vocabBpe);
        return new Gpt2Tokenizer(CodeGenTokenizer.Create(vocab, merges, addPrefixSpace: false, addBeginOfSentence: false, addEndOfSentence: false));
    }

    /// <summary>The copy in the repository's data/ folder (see <see cref="DataFiles.Find"/>).</summary>
    public static Gpt2Tokenizer FromDataFolder() => FromFiles(DataFiles.Find("data/encoder.json"), DataFiles.Find("data/vocab.bpe"));

    public string Kind => "gpt2";
    public int VocabSize => 50257;

    public int[] Encode(string text) => _bpe.EncodeToIds(text).ToArray();

    public string Decode(IEnumerable<int> ids) => _bpe.Decode(ids);

    public string ToJson() => """{"kind":"gpt2"}""";
}
