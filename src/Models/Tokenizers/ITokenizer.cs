namespace ManagedTensor.Models;

/// <summary>
/// Text to token ids and back: the one tokenizer interface of training (char, GPT-2), generation and chat
/// (llama2.c and GGUF sentencepiece vocabularies, Hugging Face tokenizer.json, GPT-2's BPE). Decoding goes one
/// token at a time as bytes (<see cref="DecodeBytes"/>), so a streaming UTF-8 decoder can join byte-fallback
/// pieces of one character. Implemented by <see cref="Data.CharTokenizer"/>, <see cref="Tokenizers.LlamaTokenizer"/>
/// and <see cref="Tokenizers.BpeTokenizer"/> (GPT-2 byte-level BPE included: <see cref="Data.Gpt2Tokenizer"/>).
/// </summary>
public interface ITokenizer
{
    /// <summary>What kind of tokenizer this is ("char", "gpt2", "llama2c", "gguf", "hf"): the key of a training checkpoint's tokenizer.</summary>
    string Kind { get; }

    int VocabSize { get; }

    /// <summary>Beginning-of-sequence id, or -1 when the vocabulary has none.</summary>
    int Bos { get; }

    /// <summary>End-of-sequence id, or -1 when the vocabulary has none.</summary>
    int Eos { get; }

    /// <summary>Whether a prompt starts with BOS (HF's post-processor / add_bos_token, GGUF's add_bos_token).</summary>
    bool AddBos { get; }

    /// <summary>
    /// Token ids of <paramref name="text"/>, with BOS first when <paramref name="bos"/> and the vocabulary has one (and
    /// EOS last when <paramref name="eos"/>). With <paramref name="parseSpecial"/>, special tokens written in the text
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

    /// <summary>Everything needed to rebuild this tokenizer from a training checkpoint (<see cref="Data.Tokenizers.FromJson"/>).</summary>
    string ToJson() => throw new NotSupportedException($"a {Kind} tokenizer is not stored in training checkpoints (char and gpt2 are)");
}

public static class TokenizerExtensions
{
    /// <summary>
    /// The text of a token sequence from its bytes (<see cref="ITokenizer.DecodeBytes"/>), BOS and EOS
    /// skipped; the bytes are gathered first so that a character split over several tokens decodes whole.
    /// </summary>
    public static string DecodeText(this ITokenizer tokenizer, IReadOnlyList<int> tokens)
    {
        var bytes = new List<byte>();
        int prev = -1;
        foreach (int t in tokens)
        {
            if ((uint)t >= (uint)tokenizer.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token {t} is outside the tokenizer's {tokenizer.VocabSize}-token vocabulary");
            if (t != tokenizer.Bos && t != tokenizer.Eos) bytes.AddRange(tokenizer.DecodeBytes(prev, t).ToArray());
            prev = t;
        }
        return System.Text.Encoding.UTF8.GetString(bytes.ToArray());
    }
}
