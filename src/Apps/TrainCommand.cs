using System.CommandLine;
using ManagedTensor.Models;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Training;
using Spectre.Console;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt train gpt`: trains a GPT with nanoGPT's recipe. With no arguments it runs nanoGPT's CPU config on
/// the embedded tiny Shakespeare (character level), writes OUT/ckpt.safetensors + OUT/config.json after
/// every evaluation, a loss curve OUT/loss.png at the end, and prints a short sample.
/// `--preset shakespeare-char` is nanoGPT's GPU config; any option given overrides the preset.
/// `--resume` continues the run in --out-dir exactly where its last checkpoint left it.
/// </summary>
public static class TrainCommand
{
    /// <summary>Named starting points; options given on the command line override them.</summary>
    public static readonly Dictionary<string, TrainConfig> Presets = new()
    {
        ["shakespeare-char-cpu"] = new TrainConfig(),
        ["shakespeare-char"] = new TrainConfig
        {
            NLayer = 6, NHead = 6, NEmbd = 384, BlockSize = 256, BatchSize = 64, Dropout = 0.2,
            MaxIters = 5000, LrDecayIters = 5000, EvalIters = 200,
        },
    };

    public static Command Create(TextWriter output)
    {
        var gpt = new Command("gpt", "train a GPT (nanoGPT architecture) on a text file; defaults: nanoGPT's CPU recipe on tiny Shakespeare");
        var preset = new Option<string>("--preset") { Description = $"starting configuration: {string.Join(", ", Presets.Keys)}", DefaultValueFactory = _ => "shakespeare-char-cpu" };
        var device = Cli.DeviceOption();
        var resume = new Option<bool>("--resume") { Description = "continue the run saved in --out-dir (same config; --max-iters may extend it)" };
        var sampleLength = new Option<int>("--sample-length") { Description = "characters/tokens to sample at the end (0: none)", DefaultValueFactory = _ => 300 };
        gpt.Options.Add(preset);
        gpt.Options.Add(device);
        gpt.Options.Add(resume);
        gpt.Options.Add(sampleLength);

        // Each option overrides one field of the preset, only when given.
        var d = new TrainConfig();
        var overrides = new List<Func<ParseResult, TrainConfig, TrainConfig>>();
        Option<T> Add<T>(string name, string description, Func<TrainConfig, T, TrainConfig> apply)
        {
            var option = new Option<T>(name) { Description = description };
            gpt.Options.Add(option);
            overrides.Add((p, cfg) => p.GetResult(option) is { Implicit: false } ? apply(cfg, p.GetValue(option)!) : cfg);
            return option;
        }
        Add<string>("--data", $"text file to train on (default {d.DataPath})", (c, v) => c with { DataPath = v });
        Add<string>("--tokenizer", $"char or gpt2 (default {d.Tokenizer})", (c, v) => c with { Tokenizer = v });
        Add<string>("--out-dir", $"checkpoint folder (default {d.OutDir})", (c, v) => c with { OutDir = v });
        Add<int>("--n-layer", $"transformer blocks (default {d.NLayer})", (c, v) => c with { NLayer = v });
        Add<int>("--n-head", $"attention heads (default {d.NHead})", (c, v) => c with { NHead = v });
        Add<int>("--n-embd", $"model width (default {d.NEmbd})", (c, v) => c with { NEmbd = v });
        Add<int>("--block-size", $"context length (default {d.BlockSize})", (c, v) => c with { BlockSize = v });
        Add<double>("--dropout", $"dropout probability (default {d.Dropout})", (c, v) => c with { Dropout = v });
        Add<bool>("--bias", "biases in Linear and LayerNorm layers (default off)", (c, v) => c with { Bias = v });
        Add<int>("--batch-size", $"sequences per micro-batch (default {d.BatchSize})", (c, v) => c with { BatchSize = v });
        Add<int>("--grad-accum", $"micro-batches per step (default {d.GradAccumSteps})", (c, v) => c with { GradAccumSteps = v });
        var maxIters = Add<int>("--max-iters", $"optimizer steps (default {d.MaxIters})", (c, v) => c with { MaxIters = v });
        Add<double>("--lr", $"peak learning rate (default {d.LearningRate})", (c, v) => c with { LearningRate = v });
        Add<double>("--min-lr", $"final learning rate (default {d.MinLr})", (c, v) => c with { MinLr = v });
        Add<int>("--warmup-iters", $"linear warm-up steps (default {d.WarmupIters})", (c, v) => c with { WarmupIters = v });
        Add<int>("--lr-decay-iters", $"cosine decay ends here (default {d.LrDecayIters})", (c, v) => c with { LrDecayIters = v });
        Add<double>("--weight-decay", $"AdamW decay of 2-D weights (default {d.WeightDecay})", (c, v) => c with { WeightDecay = v });
        Add<double>("--beta2", $"AdamW beta2 (default {d.Beta2})", (c, v) => c with { Beta2 = v });
        Add<double>("--grad-clip", $"max gradient norm, 0 = off (default {d.GradClip})", (c, v) => c with { GradClip = v });
        Add<int>("--eval-interval", $"evaluate and checkpoint every N steps (default {d.EvalInterval})", (c, v) => c with { EvalInterval = v });
        Add<int>("--eval-iters", $"batches per evaluation (default {d.EvalIters})", (c, v) => c with { EvalIters = v });
        Add<int>("--log-interval", $"print every N steps (default {d.LogInterval})", (c, v) => c with { LogInterval = v });
        Add<ulong>("--seed", $"seed of init, batches and dropout (default {d.Seed})", (c, v) => c with { Seed = v });

        gpt.SetAction(p =>
        {
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            GptTrainer trainer;
            if (p.GetValue(resume))
            {
                // Only --out-dir and --max-iters mean something here: the rest comes from the checkpoint.
                var given = overrides.Aggregate(new TrainConfig(), (c, f) => f(p, c));
                int? extendTo = p.GetResult(maxIters) is { Implicit: false } ? given.MaxIters : null;
                trainer = GptTrainer.Resume(given.OutDir, dev, extendTo);
            }
            else
            {
                string name = p.GetValue(preset)!;
                if (!Presets.TryGetValue(name, out var basis))
                    throw new ArgumentException($"unknown preset '{name}' (known: {string.Join(", ", Presets.Keys)})");
                trainer = GptTrainer.Create(overrides.Aggregate(basis, (c, f) => f(p, c)), dev);
            }
            Run(trainer, output);
            string outDir = trainer.Config.OutDir;
            string png = Path.Combine(outDir, "loss.png");
            LossPlot.Save(trainer.History, png, $"GPT {trainer.Config.NLayer}x{trainer.Config.NEmbd} on {Path.GetFileName(trainer.Config.DataPath)}");
            output.WriteLine($"best val loss {trainer.BestValLoss:F4}; loss curve: {png}");
            if (DeviceMemory.Stats(dev) is { } mem)
                output.WriteLine($"device memory: peak {DeviceMemory.FormatBytes(mem.PeakBytes)} (" +
                    string.Join(", ", mem.PeakByCategory.Select(kv => $"{kv.Key} {DeviceMemory.FormatBytes(kv.Value)}")) +
                    $"), {mem.DeviceAllocations} driver allocations");
            int n = p.GetValue(sampleLength);
            if (n > 0)
            {
                output.WriteLine("---- sample ----");
                SampleCommand.Sample(trainer.Model, trainer.Tokenizer, "\n", n, new SamplerOptions(0.8f, TopK: 200, Seed: 1337), output);
                output.WriteLine();
            }
            return 0;
        });

        var train = new Command("train", "train a model (see `mt train gpt --help`)");
        train.Subcommands.Add(gpt);
        return train;
    }

    /// <summary>Runs the loop under a live progress bar when writing to a terminal, else with plain lines.</summary>
    private static void Run(GptTrainer trainer, TextWriter output)
    {
        bool live = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (!live)
        {
            trainer.Run(new PlainTrainProgress(output));
            return;
        }
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx => trainer.Run(new LiveTrainProgress(ctx.AddTask("training"), output)));
    }
}
