using System.Security.Cryptography;
using ManagedTensor.Apps;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.IO;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Formats;

/// <summary>
/// Every format read through symbolic links laid out as the Hugging Face hub cache lays them out:
/// snapshots/REV/NAME -> ../../blobs/HASH. The size of a link is the length of its target's path, so a loader that
/// sized the file from the link refused every linked model as truncated.
/// </summary>
public sealed class SymlinkTests : IDisposable
{
    private readonly string _hub = Directory.CreateTempSubdirectory("mt-hub-").FullName;
    private readonly string _snapshot;

    public SymlinkTests()
    {
        _snapshot = Path.Combine(_hub, "snapshots", "0123abcd");
        Directory.CreateDirectory(_snapshot);
        Directory.CreateDirectory(Path.Combine(_hub, "blobs"));
    }

    public void Dispose() => Directory.Delete(_hub, recursive: true);

    /// <summary>Copies <paramref name="source"/> into blobs/ under its hash and links snapshots/REV/<paramref name="name"/> to it.</summary>
    private string Link(string source, string? name = null)
    {
        string hash = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(source)));
        string blob = Path.Combine(_hub, "blobs", hash);
        if (!File.Exists(blob)) File.Copy(source, blob);
        string link = Path.Combine(_snapshot, name ?? Path.GetFileName(source));
        File.CreateSymbolicLink(link, Path.Combine("..", "..", "blobs", hash));
        Assert.NotEqual(new FileInfo(source).Length, new FileInfo(link).Length); // the link's own size, the trap
        return link;
    }

    private void LinkDirectory(string dir)
    {
        foreach (string f in Directory.GetFiles(dir)) Link(f);
    }

    [Fact]
    public void File_length_follows_the_link()
    {
        string source = Fixtures.Path("safetensors/tiny.safetensors");
        Assert.Equal(new FileInfo(source).Length, FileLength.Of(Link(source)));
    }

    [Fact]
    public void Llama2c_checkpoint_and_tokenizer()
    {
        string model = Link(Fixtures.RepoFile("data/stories260K/stories260K.bin"));
        string tok = Link(Fixtures.RepoFile("data/stories260K/tok512.bin"), "tokenizer.bin");
        var linked = ModelLoader.Open(model, tok);
        var direct = ModelLoader.Open(Fixtures.RepoFile("data/stories260K/stories260K.bin"), Fixtures.RepoFile("data/stories260K/tok512.bin"));
        AssertSameLlama(direct, linked);
        Assert.Equal(direct.Tokenizer.Encode("Once upon a time", bos: true), linked.Tokenizer.Encode("Once upon a time", bos: true));
    }

    [Fact]
    public void Gguf_file()
    {
        string source = Fixtures.Path("gguf/llama_tiny.gguf");
        var linked = ModelLoader.Open(Link(source));
        var direct = ModelLoader.Open(source);
        AssertSameLlama(direct, linked);
    }

    private static void AssertSameLlama(LoadedModel direct, LoadedModel linked)
    {
        var (a, b) = ((ManagedTensor.Models.Llama)direct.Model, (ManagedTensor.Models.Llama)linked.Model);
        Assert.Equal(a.Config, b.Config);
        Assert.Equal(a.FinalNorm.Weight.ToDoubleArray(), b.FinalNorm.Weight.ToDoubleArray());
    }

    [Fact]
    public void Hugging_face_llama_directory_through_the_command_line()
    {
        string source = HfLlamaTests.Dir("bf16_sharded");
        LinkDirectory(source);
        string[] Args(string model) => ["generate", "-m", model, "-p", "Hello", "-n", "4", "--temperature", "0"];
        var (w1, e1) = (new StringWriter(), new StringWriter());
        Assert.True(MtApp.Run(Args(_snapshot), w1, e1) == 0, e1.ToString());
        var w2 = new StringWriter();
        Assert.Equal(0, MtApp.Run(Args(source), w2, new StringWriter()));
        Assert.Equal(w2.ToString(), w1.ToString());
    }

    [Fact]
    public void Gpt2_weights_as_llmc_file_and_as_hugging_face_directory()
    {
        string llmc = Fixtures.Path("hf_gpt2/gpt2_tiny.bin");
        var fromLink = GptWeights.Load(Link(llmc));
        var direct = GptWeights.Load(llmc);
        Assert.Equal(direct.Config, fromLink.Config);

        foreach (string f in new[] { "config.json", "model.safetensors" }) Link(Fixtures.Path("hf_gpt2/" + f));
        var hf = GptWeights.Load(_snapshot);
        Assert.Equal(GptWeights.Load(Path.GetDirectoryName(Fixtures.Path("hf_gpt2/config.json"))!).Config, hf.Config);
    }

    [Fact]
    public void Safetensors_file()
    {
        string source = Fixtures.Path("safetensors/tiny.safetensors");
        var linked = SafeTensors.Load(Link(source));
        var direct = SafeTensors.Load(source);
        Assert.Equal(direct.Keys, linked.Keys);
        foreach (var (name, t) in direct) Assert.Equal(t.ToDoubleArray(), linked[name].ToDoubleArray());
    }
}
