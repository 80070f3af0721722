using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using ManagedTensor.Apps;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Apps;

/// <summary>What a user reads: help text in one style, statistics apart from generated text, and messages that say what happens.</summary>
public sealed class CliPolishTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static IEnumerable<Command> AllCommands(Command c) => c.Subcommands.SelectMany(AllCommands).Prepend(c);

    [Fact]
    public void Every_option_is_described_and_defaults_are_written_one_way()
    {
        var root = MtApp.BuildCommands(TextWriter.Null, TextWriter.Null);
        foreach (var cmd in AllCommands(root))
        {
            foreach (var o in cmd.Options.Where(o => o is not System.CommandLine.Help.HelpOption and not VersionOption))
            {
                Assert.False(string.IsNullOrWhiteSpace(o.Description), $"mt {cmd.Name} {o.Name} has no description");
                // Defaults come from System.CommandLine as "[default: X]"; a description written "(default X)" was the other style.
                Assert.DoesNotMatch(@"\(default", o.Description!);
            }
            foreach (var a in cmd.Arguments) Assert.False(string.IsNullOrWhiteSpace(a.Description), $"mt {cmd.Name} <{a.Name}> has no description");
        }
    }

    [Theory]
    [InlineData("generate", "cpu")]
    [InlineData("chat", "cpu")]
    [InlineData("bench", "cpu")]
    [InlineData("sample", "auto")]
    [InlineData("attention-bench", "cuda")]
    public void Device_help_names_the_real_default_first_in_its_own_words(string verb, string expected)
    {
        var cmd = MtApp.BuildCommands(TextWriter.Null, TextWriter.Null).Subcommands.Single(c => c.Name == verb);
        var device = (Option<string>)cmd.Options.Single(o => o.Name == "--device");
        Assert.Equal(expected, device.GetDefaultValue());
        // The old text began "auto (the first CUDA GPU ...)" on commands whose default is cpu.
        Assert.Equal(expected == "auto", device.Description!.StartsWith("auto", StringComparison.Ordinal));
    }

    [Fact]
    public void Short_flags_as_llama_cpp()
    {
        var a = Mt.Run("generate", "-p", "Once upon", "-n", "6", "-s", "3", "--temperature", "0");
        var b = Mt.Run("generate", "-m", "data/stories260K/stories260K.bin", "--prompt", "Once upon", "--length", "6", "--seed", "3", "--temperature", "0");
        Assert.True(a.Code == 0, a.ToString());
        Assert.Equal(b.Out, a.Out);
    }

    [Fact]
    public void Generate_writes_statistics_to_stderr_so_piped_text_stays_clean()
    {
        var r = Mt.Run("generate", "-p", "Once upon a time", "-n", "8", "--temperature", "0");
        Assert.True(r.Code == 0, r.ToString());
        Assert.StartsWith("Once upon a time", r.Out);
        Assert.DoesNotContain("tok/s", r.Out);
        Assert.Contains("prefill", r.Err);
        Assert.Contains("tok/s", r.Err);
    }

    [Fact]
    public void Chat_says_which_template_it_uses_and_how_to_leave()
    {
        var psi = Mt.ProcessStart("chat", "-n", "4");
        using var p = Process.Start(psi)!;
        p.StandardInput.WriteLine("Hello");
        p.StandardInput.WriteLine();
        p.StandardInput.Close();
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(2)), "chat did not end at the empty line"); // a hang guard only
        Assert.True(p.ExitCode == 0, err);
        Assert.Contains("chat template: raw", err); // stories260K has no chat template
        Assert.Contains("an empty line or Ctrl-D ends the conversation", err);
    }

    [Fact]
    public void Progress_lines_count_steps_done_and_end_at_max_iters_like_the_bar()
    {
        string data = Path.Combine(_dir, "tiny.txt");
        File.WriteAllText(data, File.ReadAllText(Fixtures.RepoFile("data/tinyshakespeare.txt"))[..4000]);
        string outDir = Path.Combine(_dir, "run");
        var r = Mt.Run("train", "gpt", "--data", data, "--out-dir", outDir, "--max-iters", "3", "--eval-interval", "3", "--eval-iters", "1", "--log-interval", "1",
            "--n-layer", "1", "--n-head", "2", "--n-embd", "8", "--block-size", "8", "--batch-size", "2", "--sample-length", "0", "--device", "cpu", "--beta1", "0.8");
        Assert.True(r.Code == 0, r.ToString());
        var iters = r.Out.Split('\n').Where(l => l.StartsWith("iter ", StringComparison.Ordinal)).Select(l => l[..l.IndexOf(':')]).ToList();
        Assert.Equal(["iter 1/3", "iter 2/3", "iter 3/3"], iters);
        // --beta1 is settable and recorded.
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")))!;
        Assert.Equal(0.8, config["train"]!["beta1"]!.GetValue<double>());
        // Sampling past the block: the window slides, and the user is told so.
        var s = Mt.Run("sample", "--out-dir", outDir, "-p", "the", "-n", "12", "--device", "cpu");
        Assert.True(s.Code == 0, s.ToString());
        Assert.Contains("the model's context is 8 tokens", s.Err);
    }

    [Fact]
    public void Attention_bench_on_the_cpu_works_with_its_default_dtype()
    {
        var r = Mt.Run("attention-bench", "--device", "cpu", "--batch", "1", "--heads", "2", "--seq", "16", "--head-dim", "16", "--seconds", "0.001");
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("dtype=F32", r.Out);
    }

    [Fact]
    public void Quantize_offers_exactly_the_types_it_writes()
    {
        var r = Mt.Run("quantize", "--help");
        Assert.Contains("--type <" + string.Join("|", ManagedTensor.Models.Formats.QuantRecipe.Names) + ">", r.Out);
        Assert.DoesNotContain("Q4_1", r.Out); // read by llama.cpp, written by neither
    }
}
