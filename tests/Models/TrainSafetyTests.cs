using System.Diagnostics;
using System.Text.RegularExpressions;
using ManagedTensor.Models;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Training;
using ManagedTensor.Tests.Apps;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// Runs are never lost and never silently replaced: a diverging run stops and keeps its last good checkpoint, an
/// existing run is not overwritten without --force, --resume refuses changed settings, Ctrl-C checkpoints the step
/// reached, stale temporary files are removed, and evaluations do not depend on where a run was split.
/// </summary>
public sealed partial class TrainSafetyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt-safety-").FullName;
    private readonly string _data;

    public TrainSafetyTests()
    {
        _data = Path.Combine(_dir, "tiny.txt");
        File.WriteAllText(_data, File.ReadAllText(Fixtures.RepoFile("data/tinyshakespeare.txt"))[..8000]);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A tiny run's command line; <paramref name="more"/> ("--option value" pairs, or flags) replaces or adds options.</summary>
    private string[] Train(string outDir, int maxIters, params string[] more)
    {
        var options = new List<(string Name, string? Value)>
        {
            ("--data", _data), ("--out-dir", outDir), ("--max-iters", maxIters.ToString()), ("--eval-interval", "4"), ("--eval-iters", "2"),
            ("--log-interval", "1"), ("--n-layer", "1"), ("--n-head", "2"), ("--n-embd", "16"), ("--block-size", "16"), ("--batch-size", "4"),
            ("--warmup-iters", "2"), ("--lr-decay-iters", "20"), ("--dropout", "0.1"), ("--sample-length", "0"), ("--device", "cpu"),
        };
        for (int i = 0; i < more.Length; i++)
        {
            string? value = i + 1 < more.Length && !more[i + 1].StartsWith("--", StringComparison.Ordinal) ? more[++i] : null;
            options.RemoveAll(o => o.Name == more[value is null ? i : i - 1]);
            options.Add((more[value is null ? i : i - 1], value));
        }
        return ["train", "gpt", .. options.SelectMany(o => o.Value is null ? new[] { o.Name } : [o.Name, o.Value])];
    }

    private TrainConfig Config(string outDir, int maxIters) => new()
    {
        DataPath = _data,
        OutDir = outDir,
        MaxIters = maxIters,
        EvalInterval = 4,
        EvalIters = 2,
        LogInterval = 1,
        NLayer = 1,
        NHead = 2,
        NEmbd = 16,
        BlockSize = 16,
        BatchSize = 4,
        WarmupIters = 2,
        LrDecayIters = 20,
        Dropout = 0.1,
    };

    private static Mt.Result Ok(string[] args)
    {
        var r = Mt.Run(args);
        Assert.True(r.Code == 0, r.ToString());
        return r;
    }

    private static string ErrorLine(Mt.Result r)
    {
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error: ", StringComparison.Ordinal)).ToList();
        Assert.True(r.Code == 1 && lines.Count == 1, r.ToString());
        return lines[0];
    }

    private static TrainState State(string outDir)
    {
        using var c = GptCheckpoint.Load(outDir);
        return c.State;
    }

    [GeneratedRegex(@"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)", RegexOptions.Multiline)]
    private static partial Regex EvalLine();

    private static Dictionary<int, string> Evaluations(string output) =>
        EvalLine().Matches(output).ToDictionary(m => int.Parse(m.Groups[1].Value), m => m.Groups[2].Value + " " + m.Groups[3].Value);

    [Fact]
    public void A_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint()
    {
        string outDir = Path.Combine(_dir, "diverge");
        var r = Mt.Run(Train(outDir, 12, "--lr", "1e30"));
        string line = ErrorLine(r);
        Assert.Matches(@"training diverged at step \d+", line);
        Assert.Contains("last good checkpoint (step 0)", line);
        // The step-0 checkpoint is intact: finite weights, the run's state before any update.
        Assert.Equal(0, State(outDir).Iter);
        foreach (var (name, t) in SafeTensors.Load(GptCheckpoint.PathIn(outDir)))
            Assert.True(t.ToArray<float>().All(float.IsFinite), $"{name} is not finite in the kept checkpoint");
        Assert.True(File.Exists(GptCheckpoint.BestPathIn(outDir)));
        Assert.True(File.Exists(Path.Combine(outDir, "loss.png")));
    }

    [Fact]
    public void Best_and_last_checkpoints_are_kept()
    {
        string outDir = Path.Combine(_dir, "best");
        Ok(Train(outDir, 8));
        var last = State(outDir);
        using var best = GptCheckpoint.Load(GptCheckpoint.BestPathIn(outDir));
        Assert.Equal(8, last.Iter);
        Assert.Equal(last.BestValIter, best.State.Iter);
        Assert.Equal(last.BestValLoss, best.State.BestValLoss);
    }

    [Fact]
    public void An_existing_run_is_not_replaced_without_force()
    {
        string outDir = Path.Combine(_dir, "existing");
        Ok(Train(outDir, 2));
        var before = File.ReadAllBytes(GptCheckpoint.PathIn(outDir));
        string line = ErrorLine(Mt.Run(Train(outDir, 2, "--seed", "7")));
        Assert.Contains("--resume", line);
        Assert.Contains("--force", line);
        Assert.Equal(before, File.ReadAllBytes(GptCheckpoint.PathIn(outDir)));
        Ok(Train(outDir, 2, "--seed", "7", "--force"));
        Assert.NotEqual(before, File.ReadAllBytes(GptCheckpoint.PathIn(outDir)));
    }

    [Fact]
    public void Resume_refuses_changed_settings_and_says_what_differs()
    {
        string outDir = Path.Combine(_dir, "resume");
        Ok(Train(outDir, 2));
        string line = ErrorLine(Mt.Run(["train", "gpt", "--resume", "--out-dir", outDir, "--n-embd", "32", "--lr", "0.01", "--batch-size", "8", "--device", "cpu"]));
        Assert.Contains("--n-embd 32 (the run has 16)", line);
        Assert.Contains("--lr 0.01 (the run has 0.001)", line);
        Assert.Contains("--batch-size 8 (the run has 4)", line);
        Assert.Contains("--max-iters", line); // says which settings may change
        // The same values, and the settings that do not change the trajectory, are accepted.
        var r = Ok(["train", "gpt", "--resume", "--out-dir", outDir, "--n-embd", "16", "--max-iters", "3", "--log-interval", "2", "--device", "cpu", "--sample-length", "0"]);
        Assert.Contains("resuming with --max-iters 3 (was 2), --log-interval 2 (was 1)", r.Err);
        Assert.Equal(3, State(outDir).Iter);
        Assert.Contains("--preset", ErrorLine(Mt.Run(["train", "gpt", "--resume", "--out-dir", outDir, "--preset", "shakespeare-char"])));
    }

    [Fact]
    public void Evaluations_do_not_depend_on_where_the_run_was_split()
    {
        // Evaluating every 3 steps: the split run evaluates once more, at its first end (step 5). Its later
        // evaluations must still see the batches of the unbroken run.
        string straight = Path.Combine(_dir, "straight"), split = Path.Combine(_dir, "split");
        var a = Evaluations(Ok(Train(straight, 10, "--eval-interval", "3")).Out);
        var b1 = Evaluations(Ok(Train(split, 5, "--eval-interval", "3")).Out);
        var b2 = Evaluations(Ok(["train", "gpt", "--resume", "--out-dir", split, "--max-iters", "10", "--device", "cpu", "--sample-length", "0"]).Out);
        Assert.Equal([0, 3, 6, 9, 10], a.Keys.Order());
        Assert.Equal([0, 3, 5], b1.Keys.Order());
        Assert.Equal([6, 9, 10], b2.Keys.Order());
        foreach (int step in new[] { 0, 3 }) Assert.Equal(a[step], b1[step]);
        foreach (int step in new[] { 6, 9, 10 }) Assert.Equal(a[step], b2[step]);
    }

    /// <summary>Cancels the run when it reports step <paramref name="at"/> (what Ctrl-C does through the signal handler).</summary>
    private sealed class CancelAt(int at, CancellationTokenSource cts) : ITrainingObserver
    {
        public void OnStart(ManagedTensor.Models.TrainableLM model, TrainConfig config, int startIter, ITokenizer tokenizer, TextDataset data) { }
        public void OnStep(int iter, double loss, double lr, double tokensPerSecond, double msPerIter)
        {
            if (iter == at) cts.Cancel();
        }
        public void OnEval(int iter, double trainLoss, double valLoss) { }
        public void OnCheckpoint(int iter, string path, bool best) { }
    }

    [Fact]
    public void An_interrupted_run_checkpoints_the_step_it_reached_and_resumes_exactly()
    {
        string straight = Path.Combine(_dir, "unbroken"), stopped = Path.Combine(_dir, "stopped");
        Assert.Equal(TrainOutcome.Finished, GptTrainer.Create(Config(straight, 9), Device.Cpu).Run(new CancelAt(-1, new())));

        using var cts = new CancellationTokenSource();
        var trainer = GptTrainer.Create(Config(stopped, 9), Device.Cpu);
        Assert.Equal(TrainOutcome.Interrupted, trainer.Run(new CancelAt(5, cts), cts.Token)); // stops after step index 5: 6 steps done
        Assert.Equal(6, trainer.CheckpointIter);
        Assert.Equal(6, State(stopped).Iter); // between evaluations (4 and 8): written because of the interruption

        Assert.Equal(TrainOutcome.Finished, GptTrainer.Resume(stopped, Device.Cpu).Run(new CancelAt(-1, new())));
        var a = SafeTensors.Load(GptCheckpoint.PathIn(straight));
        var b = SafeTensors.Load(GptCheckpoint.PathIn(stopped));
        foreach (var (name, t) in a) Assert.True(t.ToArray<float>().SequenceEqual(b[name].ToArray<float>()), $"{name} differs after the interrupted run resumed");
        Assert.Equal(State(straight).History.Where(p => p.Val is not null), State(stopped).History.Where(p => p.Val is not null));
    }

    [Fact]
    public void Resume_says_when_the_runs_text_is_gone_or_changed()
    {
        string outDir = Path.Combine(_dir, "moved");
        Ok(Train(outDir, 2));
        string[] resume = ["train", "gpt", "--resume", "--out-dir", outDir, "--device", "cpu", "--sample-length", "0"];
        string saved = File.ReadAllText(_data);
        File.Delete(_data);
        Assert.Contains($"the text the run in {GptCheckpoint.PathIn(outDir)} trains on is gone", ErrorLine(Mt.Run(resume)));
        File.WriteAllText(_data, saved + "\u00e9\u00e9\u00e9"); // characters the run's vocabulary never had
        Assert.Contains("tokenizer (in " + GptCheckpoint.PathIn(outDir) + ") cannot encode it", ErrorLine(Mt.Run(resume)));
    }

    [Fact]
    public void Stale_temporary_files_are_removed_at_the_next_start()
    {
        string outDir = Path.Combine(_dir, "stale");
        Ok(Train(outDir, 2));
        foreach (string name in new[] { GptCheckpoint.FileName, GptCheckpoint.ConfigFileName, GptCheckpoint.BestFileName })
            File.WriteAllText(AtomicFile.TempPath(Path.Combine(outDir, name)), "a write killed half way");
        Ok(["train", "gpt", "--resume", "--out-dir", outDir, "--device", "cpu", "--sample-length", "0"]);
        Assert.Empty(Directory.GetFiles(outDir, "*.tmp"));
    }

    private const int SigInt = 2;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    /// <summary>Whether this process ignores SIGINT (bit 1 of SigIgn in /proc/self/status; a child inherits it).</summary>
    private static bool SigIntIgnored() =>
        File.Exists("/proc/self/status") && File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal)) is { } line
        && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & (1UL << (SigInt - 1))) != 0;

    /// <summary>
    /// Ctrl-C as a user presses it: SIGINT to a real `mt train gpt` process. It must checkpoint the step it reached,
    /// write loss.png, say how to resume, and exit with 130; the run then resumes from that step.
    /// </summary>
    [Fact]
    public async Task Ctrl_c_checkpoints_and_says_how_to_resume()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        string outDir = Path.Combine(_dir, "sigint");
        using var p = Process.Start(Mt.ProcessStart(Train(outDir, 1_000_000, "--eval-interval", "100000")))!;
        p.StandardInput.Close();
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = new List<string>();
        string? line;
        while ((line = p.StandardOutput.ReadLine()) is not null)
        {
            stdout.Add(line);
            if (line.StartsWith("iter 3/", StringComparison.Ordinal)) break;
        }
        if (line is null) Assert.Fail("the run ended before step 3:\n" + string.Join('\n', stdout) + await stderr); // stderr ends with the process
        Assert.Equal(0, Kill(p.Id, SigInt));
        var rest = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2))) // only a guard against a hang
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("mt did not stop within 2 minutes of SIGINT" + (SigIntIgnored()
                ? ": SIGINT is ignored in this test process, and so in mt (a shell without job control ignores it for background jobs)"
                : ""));
        }
        stdout.AddRange((await rest).Split('\n'));
        string err = await stderr;
        Assert.True(p.ExitCode == 130, $"exit {p.ExitCode}\n{string.Join('\n', stdout)}\n{err}");
        int iter = State(outDir).Iter;
        Assert.True(iter >= 3, $"checkpoint at step {iter}");
        Assert.Contains($"interrupted at step {iter}: checkpoint of step {iter}", err);
        Assert.Contains($"continue with: mt train gpt --resume --out-dir {outDir}", err);
        Assert.True(File.Exists(Path.Combine(outDir, "loss.png")));
        Assert.Empty(Directory.GetFiles(outDir, "*.tmp"));
        Ok(["train", "gpt", "--resume", "--out-dir", outDir, "--max-iters", (iter + 2).ToString(), "--device", "cpu", "--sample-length", "0"]);
        Assert.Equal(iter + 2, State(outDir).Iter);
    }
}
