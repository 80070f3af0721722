using System.Text.Json;
using System.Text.Json.Nodes;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Tokenizers;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Data;

/// <summary>
/// tokenizer.json BPE against independent implementations: GPT-2's own vocabulary (data/encoder.json + vocab.bpe) written
/// as a tokenizer.json must encode exactly as Microsoft.ML.Tokenizers' CodeGen tokenizer does on the same files (a
/// test-only reference), and as <see cref="Gpt2Tokenizer"/> built from those files directly.
/// </summary>
public class HfTokenizerTests
{
    private static readonly Lazy<BpeTokenizer> Gpt2Json = new(() =>
    {
        var vocab = JsonNode.Parse(File.ReadAllText(RepoPaths.Of("data", "encoder.json")))!;
        var merges = new JsonArray(File.ReadLines(RepoPaths.Of("data", "vocab.bpe")).Skip(1).Where(l => l.Length > 0).Select(l => (JsonNode)l).ToArray());
        var json = new JsonObject
        {
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = 50256, ["content"] = "<|endoftext|>", ["special"] = true }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["post_processor"] = new JsonObject { ["type"] = "ByteLevel", ["trim_offsets"] = false },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = merges },
        };
        string path = Path.Combine(Path.GetTempPath(), $"mt-gpt2-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json.ToJsonString());
        try { return HfTokenizer.Parse(HfJson.Load(path), null, eosId: 50256); }
        finally { File.Delete(path); }
    });

    private static readonly Lazy<Microsoft.ML.Tokenizers.Tokenizer> CodeGen = new(() =>
    {
        using var vocab = File.OpenRead(RepoPaths.Of("data", "encoder.json"));
        using var merges = File.OpenRead(RepoPaths.Of("data", "vocab.bpe"));
        return Microsoft.ML.Tokenizers.CodeGenTokenizer.Create(vocab, merges, addPrefixSpace: false, addBeginOfSentence: false, addEndOfSentence: false);
    });

    [Fact]
    public void Gpt2TokenizerJsonMatchesTheCodeGenTokenizerOnShakespeareAndOddText()
    {
        var tok = Gpt2Json.Value;
        Assert.Equal([15496, 995], tok.Encode("Hello world", bos: false));
        string shakespeare = File.ReadAllText(RepoPaths.Of("data", "tinyshakespeare.txt"))[..6000];
        // CodeGen adds tokens for runs of spaces (ids above 50256), so runs of spaces are checked separately below.
        string[] texts = [shakespeare, "tabs\tand\ttabs\n\n\nlines\n", "Zoë ✓ naïve 日本語 🙂 café", "It's 12345 o'clock, isn't it? We'll see.", "a\u00a0b\u2003c", ""];
        foreach (var text in texts)
        {
            var want = CodeGen.Value.EncodeToIds(text).ToArray();
            var got = tok.Encode(text, bos: false);
            Assert.True(want.SequenceEqual(got), $"'{text[..Math.Min(40, text.Length)]}': {got.Count} ids, CodeGen {want.Length}; first difference at {want.Zip(got).TakeWhile(p => p.First == p.Second).Count()}: [{string.Join(", ", got)}] vs CodeGen [{string.Join(", ", want)}]");
            Assert.Equal(text, tok.Decode(got));
            Assert.Equal(got, Gpt2Tokenizer.FromDataFolder().Encode(text));   // GPT-2's own files, read directly: the same BPE
        }
        // GPT-2 has no token for two spaces: "\s+(?!\S)" leaves the last space to the next word, and "Ġ" stays alone.
        Assert.Equal([220, 734, 220, 9029, 197, 392, 628, 198, 6615, 220, 220], tok.Encode("  two  spaces\tand\n\n\nlines  ", bos: false));
        Assert.False(tok.AddBos);
        Assert.Equal(50256, tok.Eos);
    }

    [Fact]
    public void Gpt2FilesGiveTheTokenizerJsonTokenizationOfTheWholeShakespeare()
    {
        // The training tokenizer (`mt train gpt --tokenizer gpt2`) over the whole corpus, runs of spaces included.
        string text = File.ReadAllText(RepoPaths.Of("data", "tinyshakespeare.txt"));
        var direct = Gpt2Tokenizer.FromDataFolder();
        Assert.Equal(Gpt2Json.Value.Encode(text, bos: false), direct.Encode(text));
        Assert.Equal(("gpt2", 50257, -1, 50256), (direct.Kind, direct.VocabSize, direct.Bos, direct.Eos));
        Assert.IsType<BpeTokenizer>(ManagedTensor.Models.Data.Tokenizers.FromJson(direct.ToJson()));
    }

    [Fact]
    public void SpecialTokensAreMatchedWholeOnlyWhenAsked()
    {
        var tok = Gpt2Json.Value;
        Assert.Equal([64, 50256, 65], tok.Encode("a<|endoftext|>b", bos: false, parseSpecial: true));
        Assert.DoesNotContain(50256, tok.Encode("a<|endoftext|>b", bos: false));
        Assert.Equal("a<|endoftext|>b", tok.Decode(tok.Encode("a<|endoftext|>b", bos: false)));
    }

    [Fact]
    public void SplitterPrefersTheLongestSpecialToken()
    {
        var specials = new Dictionary<string, int> { ["<|a|>"] = 1, ["<|a|><|b|>"] = 2, ["<s>"] = 3 };
        Assert.Equal([("x", -1), ("<|a|><|b|>", 2), ("<|a|>", 1), (" y ", -1), ("<s>", 3)], SpecialTokens.Split("x<|a|><|b|><|a|> y <s>", specials));
        Assert.Empty(SpecialTokens.Split("", specials));
    }

    [Fact]
    public void MetaspacePrependsOnlyAtTheStartWithSchemeFirst()
    {
        // A sentencepiece-style vocabulary with the newer Metaspace pre-tokenizer instead of Prepend/Replace normalizers.
        string[] tokens = ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "\u2581a", "\u2581b", "ab"];
        var m = new BpeModel
        {
            Tokens = tokens,
            Merges = [("\u2581", "a"), ("\u2581", "b"), ("a", "b")],
            Added = [("<unk>", 0, true), ("<s>", 1, true), ("</s>", 2, true)],
            PreTokenizers = [new PreTokenizer.Metaspace('\u2581', MetaspacePrepend.First, SplitWords: false)],
            SpaceMarker = '\u2581',
            StripLeadingSpace = true,
            Unk = 0,
            Bos = 1,
            Eos = 2,
            AddBos = true,
        };
        var tok = new BpeTokenizer(m);
        Assert.Equal([1, 6, 7], tok.Encode("a b"));                                // "▁a▁b"
        Assert.Equal([1, 6, 1, 4, 7], tok.Encode("a<s>a b", parseSpecial: true));   // no ▁ after <s>: not the start of the text
        Assert.Equal([1, 6, 5, 0], tok.Encode("abc"));                               // "▁a" then "b" (no ("▁a", "b") merge), "c" is unknown
        Assert.Equal("a b", tok.Decode([6, 7]));                                       // leading marker stripped
    }
}
