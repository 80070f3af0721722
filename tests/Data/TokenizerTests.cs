using ManagedTensor.Models.Data;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Data;

public sealed class TokenizerTests
{
    [Fact]
    public void CharVocabularyIsSortedDistinctCharacters()
    {
        var tok = CharTokenizer.FromText("hello world\n");
        Assert.Equal("\n dehlorw", tok.Chars);
        Assert.Equal(9, tok.VocabSize);
        Assert.Equal([4, 3, 5, 5, 6], tok.Encode("hello"));
        Assert.Equal("world\n", tok.Decode(tok.Encode("world\n")));
    }

    [Fact]
    public void CharTokenizerRejectsUnknownCharacters()
    {
        var tok = CharTokenizer.FromText("abc");
        var e = Assert.Throws<ArgumentException>(() => tok.Encode("abz"));
        Assert.Contains("'z'", e.Message);
        Assert.Contains("position 2", e.Message);
    }

    [Fact]
    public void CharTokenizerJsonRoundTrip()
    {
        var tok = CharTokenizer.FromText("First Citizen:\nBefore we proceed any further, hear me speak.\"\\");
        var back = Tokenizers.FromJson(tok.ToJson());
        var c = Assert.IsType<CharTokenizer>(back);
        Assert.Equal(tok.Chars, c.Chars);
    }

    [Fact]
    public void ShakespeareHas65Characters()
    {
        string text = File.ReadAllText(Fixtures.RepoFile("data/tinyshakespeare.txt"));
        Assert.Equal(1115394, text.Length);
        Assert.Equal(65, CharTokenizer.FromText(text).VocabSize);
    }

    [Fact]
    public void Gpt2EncodesHelloWorld()
    {
        var tok = Gpt2Tokenizer.FromFiles(Fixtures.RepoFile("data/encoder.json"), Fixtures.RepoFile("data/vocab.bpe"));
        Assert.Equal([15496, 995], tok.Encode("Hello world"));
        Assert.Equal("Hello world", tok.Decode([15496, 995]));
        string s = "First Citizen:\nBefore we proceed any further, hear me speak.";
        Assert.Equal(s, tok.Decode(tok.Encode(s)));
        Assert.Equal(50257, tok.VocabSize);
    }
}
