using System.Text.Json;
using ManagedTensor.Apps;
using ManagedTensor.Models;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Tokenizers;
using ManagedTensor.Models.Training;
using ManagedTensor.Optim;
using Xunit;

namespace ManagedTensor.Tests.Llama;

/// <summary>
/// `mt generate --model X` for every language model the project reads (one loader, the format detected), and the
/// tokenizer-smaller-than-model class: a tokenizer with more tokens than the model's embedding is refused when loading,
/// naming both sizes (it used to end in an IndexOutOfRange deep inside); one with fewer is legitimate (a padded
/// embedding) and only its ids are sampled.
/// </summary>
public sealed class GenerateEveryModelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt-generate-").FullName;
    private static string Gpt2Fixture => RepoPaths.Of("tests", "fixtures", "hf_gpt2");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Output) Mt(params string[] args)
    {
        var w = new StringWriter();
        int code = MtApp.Run(args, w);
        return (code, w.ToString());
    }

    /// <summary>
    /// A GPT-2 vocabulary of the fixture's 96 tokens (vocab.json + merges.txt, GPT-2's file formats): the printable bytes
    /// '!'.. as single-character tokens and no merges, so text of those characters encodes one token per byte.
    /// </summary>
    private static void WriteTinyGpt2Vocabulary(string dir)
    {
        var vocab = Enumerable.Range(0, 96).ToDictionary(i => BpeTokenizer.ByteToChar['!' + i].ToString(), i => i);
        File.WriteAllText(Path.Combine(dir, "vocab.json"), JsonSerializer.Serialize(vocab));
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\n");
    }

    private string Gpt2DirWithVocabulary()
    {
        string d = Path.Combine(_dir, "gpt2");
        Directory.CreateDirectory(d);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Path.Combine(Gpt2Fixture, f), Path.Combine(d, f));
        WriteTinyGpt2Vocabulary(d);
        return d;
    }

    /// <summary>The greedy continuation the GPT model gives by itself (nanoGPT's loop), as text after the prompt.</summary>
    private static string Greedy(GPT model, ITokenizer tok, string prompt, int n)
    {
        var ids = tok.Encode(prompt, bos: false);
        var rows = model.Generate(Tensor.FromArray(ids.Select(i => (long)i).ToArray(), [1, ids.Count]), n, new Sampler(new SamplerOptions(Temperature: 0)), useCache: false);
        return tok.Decode(rows[0].Skip(ids.Count).ToList());
    }

    [Fact]
    public void Hugging_face_gpt2_directory_generates_with_its_vocabulary()
    {
        string dir = Gpt2DirWithVocabulary();
        var loaded = ModelLoader.Open(dir);
        var gpt = Assert.IsType<GPT>(loaded.Model);
        Assert.Equal(96, loaded.Tokenizer.VocabSize);
        string want = "abc" + Greedy(gpt, loaded.Tokenizer, "abc", 6);
        foreach (var path in new[] { dir, Path.Combine(dir, "config.json") })
        {
            var (code, output) = Mt("generate", "--model", path, "--prompt", "abc", "--length", "6", "--temperature", "0");
            Assert.True(code == 0, output);
            Assert.StartsWith(want + Environment.NewLine, output);
        }
    }

    [Fact]
    public void Llmc_gpt2_generates_with_a_given_vocabulary_and_refuses_one_too_large()
    {
        string dir = Gpt2DirWithVocabulary();
        string bin = Path.Combine(Gpt2Fixture, "gpt2_tiny.bin");
        var (code, output) = Mt("generate", "--model", bin, "--tokenizer", Path.Combine(dir, "vocab.json"), "--prompt", "abc", "--length", "6", "--temperature", "0");
        Assert.True(code == 0, output);
        var gpt = GptWeights.LoadLlmC(bin);
        Assert.StartsWith("abc" + Greedy(gpt, ModelLoader.LoadTokenizer(Path.Combine(dir, "vocab.json"), 96), "abc", 6), output);

        // GPT-2's own 50257-token vocabulary on this 96-token model: the prompt's ids would be past the embedding.
        var e = Assert.Throws<InvalidModelFileException>(() => ModelLoader.Open(bin));
        Assert.Contains("50257", e.Message);
        Assert.Contains("96", e.Message);
        Assert.Equal(1, Mt("generate", "--model", bin, "--prompt", "Hello", "--length", "4").Code);
    }

    [Fact]
    public void Sample_gpt2_with_the_repositorys_fixture_is_a_clear_error_not_an_index_out_of_range()
    {
        // `mt sample --gpt2 tests/fixtures/hf_gpt2 --length 4 --temperature 0`: GPT-2's tokenizer (50257) on the fixture's 96 rows.
        var e = Record.Exception(() => ModelLoader.Open(Gpt2Fixture));
        Assert.IsType<InvalidModelFileException>(e);
        Assert.Contains("50257", e.Message);
        Assert.Contains("96", e.Message);
        Assert.Equal(1, Mt("sample", "--gpt2", Gpt2Fixture, "--length", "4", "--temperature", "0").Code);
    }

    /// <summary>An `mt train gpt` checkpoint (weights, AdamW moments, configs, tokenizer) of a fresh 65-character model.</summary>
    private string TrainCheckpoint(string name, ITokenizer tokenizer)
    {
        string outDir = Path.Combine(_dir, name);
        Directory.CreateDirectory(outDir);
        var train = new TrainConfig { OutDir = outDir, BlockSize = 16, NLayer = 1, NHead = 2, NEmbd = 16 };
        var model = new GPT(train.ModelConfig(65), new Generator(1));
        var opt = new AdamW(model.NamedParameters(), lr: 1e-3);
        GptCheckpoint.Save(outDir, model, opt, train, new TrainState(), tokenizer);
        return outDir;
    }

    [Fact]
    public void Train_gpt_checkpoints_generate_from_the_out_dir_or_the_file()
    {
        string text = File.ReadAllText(RepoPaths.Of("data", "tinyshakespeare.txt"));
        string outDir = TrainCheckpoint("char", CharTokenizer.FromText(text));
        foreach (var path in new[] { outDir, Path.Combine(outDir, GptCheckpoint.FileName) })
        {
            var (code, output) = Mt("generate", "--model", path, "--prompt", "ROMEO:", "--length", "30", "--temperature", "0");
            Assert.True(code == 0, output);
            Assert.StartsWith("ROMEO:", output);
            Assert.True(output.Length > "ROMEO:".Length + 20, output);
        }
        // An empty prompt starts from a newline (no BOS in a character vocabulary), and the 16-position block slides.
        var (c2, o2) = Mt("generate", "--model", outDir, "--length", "40", "--temperature", "0");
        Assert.True(c2 == 0, o2);
    }

    [Fact]
    public void A_checkpoint_with_a_gpt2_tokenizer_on_a_65_token_model_is_refused_naming_both_sizes()
    {
        string outDir = TrainCheckpoint("gpt2-on-65", Gpt2Tokenizer.FromDataFolder());
        // The checkpoint's own cross-check (model_config against train_config and the tokenizer) refuses it first.
        var e = Assert.ThrowsAny<InvalidDataException>(() => ModelLoader.Open(outDir));
        Assert.Contains("vocab_size 65", e.Message);
        Assert.Contains("50257", e.Message);
        Assert.Equal(1, Mt("sample", "--out-dir", outDir, "--length", "4").Code);
        Assert.Equal(1, Mt("generate", "--model", outDir, "--length", "4").Code);
    }

    [Fact]
    public void A_gguf_vocabulary_shorter_than_the_embedding_samples_only_its_tokens()
    {
        var (model, tok) = ModelLoader.OpenLlama(RepoPaths.Stories260K, RepoPaths.Tok512);
        var shorter = new LlamaTokenizer(tok.Vocab[..500], tok.Scores[..500]);
        string path = Path.Combine(_dir, "short-vocab.gguf");
        GgufLlama.Save(model, shorter, path, GgmlType.F32);
        var m = ModelLoader.Open(path);
        Assert.Equal((512, 500), (m.Model.VocabSize, m.Tokenizer.VocabSize));
        var r = TextGenerator.Generate(m.Model, m.Tokenizer, [1], 300, new SamplerOptions(Temperature: 1.5f, Seed: 3), stopTokens: []);
        Assert.Equal(300, r.Generated.Count);
        Assert.All(r.Generated, t => Assert.InRange(t, 0, 499));
        // And a tokenizer.json larger than the model's vocab_size is refused, naming both sizes.
        var big = Assert.Throws<ArgumentException>(() => new ChatSession(m.Model, Gpt2Tokenizer.FromDataFolder(), new SamplerOptions()));
        Assert.Contains("50257", big.Message);
        Assert.Contains("512", big.Message);
    }

    [Fact]
    public void Llama_formats_all_generate_through_the_one_loader()
    {
        // llama2.c (+ tokenizer.bin), GGUF, Hugging Face Llama: the same command line.
        string gguf = Path.Combine(_dir, "stories260K-Q8_0.gguf");
        Quantize.Run(RepoPaths.Stories260K, RepoPaths.Tok512, gguf, GgmlType.Q8_0, TextWriter.Null);
        foreach (var (model, tokenizer) in new[] { (RepoPaths.Stories260K, (string?)RepoPaths.Tok512), (gguf, null), (ManagedTensor.Tests.Formats.HfLlamaTests.Dir("f16_tied"), null) })
        {
            var args = new List<string> { "generate", "--model", model, "--prompt", "Once upon a time", "--length", "12", "--temperature", "0" };
            if (tokenizer is not null) args.AddRange(["--tokenizer", tokenizer]);
            var (code, output) = Mt([.. args]);
            Assert.True(code == 0, $"{model}: {output}");
            Assert.StartsWith("Once upon a time", output);
        }
    }
}
