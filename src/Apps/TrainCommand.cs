using System.CommandLine;
using System.Runtime.InteropServices;
using ManagedTensor.Models;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Training;
using Spectre.Console;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt train ARCH` (gpt, mamba, rwkv, ...: <see cref="Architectures"/>): one subcommand per architecture, all on the
/// same trainer, flags, progress, checkpoints, resume and plot; each takes the model flags its architecture reads.
/// `mt train gpt` trains a GPT with nanoGPT's recipe. With no arguments it runs nanoGPT's CPU config on
/// the embedded tiny Shakespeare (character level), writes OUT/ckpt.safetensors + OUT/config.json after
/// every evaluation (and OUT/best.safetensors when the validation loss improves), a loss curve OUT/loss.png
/// at the end, and prints a short sample. `--preset shakespeare-char` is nanoGPT's GPU config; any option
/// given overrides the preset. `--resume` continues the run in --out-dir exactly where its last checkpoint
/// left it; a run already in --out-dir is never replaced without --force. Ctrl-C checkpoints the step reached.
/// </summary>
public static class TrainCommand
{
    /// <summary>Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).</summary>
    public const int InterruptedExitCode = 130;

    public static Command Create(TextWriter output, TextWriter error)
    {
        var train = new Command("train", "train a model (see `mt train gpt --help`; every architecture takes the same options)");
        foreach (var arch in Architectures.All) train.Subcommands.Add(ArchCommand(arch, output, error));
        return train;
    }

    private static Command ArchCommand(ArchDef arch, TextWriter output, TextWriter error)
    {
        var presets = arch.Presets;
        var gpt = new Command(arch.Name, arch.Summary);
        var preset = new Option<string>("--preset")
        {
            Description = $"starting configuration ({string.Join(", ", presets.Keys)}); the options below override it, and their defaults shown are {Architectures.DefaultPreset}'s",
            DefaultValueFactory = _ => Architectures.DefaultPreset,
        };
        preset.AcceptOnlyFromAmong([.. presets.Keys]);
        var device = Cli.DeviceOption();
        var resume = new Option<bool>("--resume") { Description = "continue the run saved in --out-dir with its own settings (only --max-iters, --eval-interval and --log-interval may change)" };
        var force = new Option<bool>("--force") { Description = "start a new run even though --out-dir holds one (its checkpoints are deleted)" };
        var sampleLength = new Option<int>("--sample-length") { Description = "characters/tokens to sample at the end (0: none)", DefaultValueFactory = _ => 300 }.AtLeast(0);
        gpt.Options.Add(preset);
        gpt.Options.Add(device);
        gpt.Options.Add(resume);
        gpt.Options.Add(force);
        gpt.Options.Add(sampleLength);

        // Each option overrides one field of the preset, only when given. Defaults shown in help are the CPU preset's;
        // TrainConfig.Validate checks every value (finite, in range) before anything is read or built.
        var d = presets[Architectures.DefaultPreset];
        var fields = new List<FieldOption<TrainConfig>>();
        Option<T>? Add<T>(string name, string description, Func<TrainConfig, T> get, Func<TrainConfig, T, TrainConfig> set, bool safeOnResume = false, bool model = false)
            where T : notnull
        {
            if (model && !arch.ModelFlags.Contains(name[2..])) return null; // a size this architecture does not have
            var option = new Option<T>(name) { Description = description, DefaultValueFactory = _ => get(d) };
            gpt.Options.Add(option);
            fields.Add(new FieldOption<TrainConfig>(option, safeOnResume, c => get(c), p => p.GetValue(option)!, (c, p) => set(c, p.GetValue(option)!)));
            return option;
        }
        Add("--data", "text file to train on", c => c.DataPath, (c, v) => c with { DataPath = v });
        Add("--tokenizer", "char (the text's characters) or gpt2 (GPT-2's BPE)", c => c.Tokenizer, (c, v) => c with { Tokenizer = v });
        var outDir = Add("--out-dir", "folder of the run: checkpoints, config.json, loss.png", c => c.OutDir, (c, v) => c with { OutDir = v });
        Add("--n-layer", "blocks (layers)", c => c.NLayer, (c, v) => c with { NLayer = v }, model: true);
        Add("--n-head", "attention heads", c => c.NHead, (c, v) => c with { NHead = v }, model: true);
        Add("--n-embd", "model width", c => c.NEmbd, (c, v) => c with { NEmbd = v }, model: true);
        Add("--block-size", "context length (training sequence length)", c => c.BlockSize, (c, v) => c with { BlockSize = v });
        Add("--dropout", "dropout probability", c => c.Dropout, (c, v) => c with { Dropout = v }, model: true);
        Add("--bias", "biases in Linear and LayerNorm layers", c => c.Bias, (c, v) => c with { Bias = v }, model: true);
        Add("--d-state", "SSM state size N per channel", c => c.DState, (c, v) => c with { DState = v }, model: true);
        Add("--d-conv", "width of the causal depthwise convolution", c => c.DConv, (c, v) => c with { DConv = v }, model: true);
        Add("--expand", "inner width = expand * n-embd", c => c.Expand, (c, v) => c with { Expand = v }, model: true);
        Add("--head-size", "channels per WKV head (n-embd must be a multiple)", c => c.HeadSize, (c, v) => c with { HeadSize = v }, model: true);
        Add("--experts", "experts per mixture-of-experts layer", c => c.Experts, (c, v) => c with { Experts = v }, model: true);
        Add("--top-k", "experts each token is routed to (at most --experts)", c => c.TopK, (c, v) => c with { TopK = v }, model: true);
        Add("--batch-size", "sequences per micro-batch", c => c.BatchSize, (c, v) => c with { BatchSize = v });
        Add("--grad-accum", "micro-batches per step", c => c.GradAccumSteps, (c, v) => c with { GradAccumSteps = v });
        Add("--max-iters", "optimizer steps", c => c.MaxIters, (c, v) => c with { MaxIters = v }, safeOnResume: true);
        Add("--lr", "peak learning rate", c => c.LearningRate, (c, v) => c with { LearningRate = v });
        Add("--min-lr", "final learning rate", c => c.MinLr, (c, v) => c with { MinLr = v });
        Add("--warmup-iters", "linear warm-up steps", c => c.WarmupIters, (c, v) => c with { WarmupIters = v });
        Add("--lr-decay-iters", "cosine decay ends here", c => c.LrDecayIters, (c, v) => c with { LrDecayIters = v });
        Add("--weight-decay", "AdamW decay of 2-D weights", c => c.WeightDecay, (c, v) => c with { WeightDecay = v });
        Add("--beta1", "AdamW beta1 (first-moment decay)", c => c.Beta1, (c, v) => c with { Beta1 = v });
        Add("--beta2", "AdamW beta2 (second-moment decay)", c => c.Beta2, (c, v) => c with { Beta2 = v });
        Add("--grad-clip", "max gradient norm (0: off)", c => c.GradClip, (c, v) => c with { GradClip = v });
        Add("--optim", ConfigOptions.OptimDescription, c => c.Optim, (c, v) => c with { Optim = v })!.Choices(MixedPrecision.OptimKinds);
        Add("--autocast", ConfigOptions.AutocastDescription, c => c.Autocast, (c, v) => c with { Autocast = v })!.Choices(MixedPrecision.AutocastModes);
        Add("--checkpoint-activations", "recompute each block's activations in the backward pass: same gradients, less memory (gpt)", c => c.CheckpointActivations, (c, v) => c with { CheckpointActivations = v }, safeOnResume: true);
        Add("--eval-interval", "evaluate and checkpoint every N steps", c => c.EvalInterval, (c, v) => c with { EvalInterval = v }, safeOnResume: true);
        Add("--eval-iters", "batches per evaluation", c => c.EvalIters, (c, v) => c with { EvalIters = v });
        Add("--log-interval", "print every N steps", c => c.LogInterval, (c, v) => c with { LogInterval = v }, safeOnResume: true);
        Add("--seed", "seed of init, batches and dropout", c => c.Seed, (c, v) => c with { Seed = v });

        gpt.SetAction(p =>
        {
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            GptTrainer trainer;
            if (p.GetValue(resume))
            {
                if (p.GetResult(preset) is { Implicit: false })
                    throw new UserErrorException("--preset cannot be combined with --resume: a resumed run keeps the settings it was started with");
                if (p.GetValue(force)) throw new UserErrorException("--force starts a new run and --resume continues one: give one of them");
                string dir = p.GetValue(outDir!)!;
                trainer = GptTrainer.Resume(dir, dev, run => run.Arch == arch.Name ? ConfigOptions.ChangesOnResume(run, fields, p, dir, error)
                    : throw new UserErrorException($"--out-dir {dir} holds a {run.Arch} run: continue it with mt train {run.Arch} --resume --out-dir {dir}"));
            }
            else
            {
                var basis = presets[p.GetValue(preset)!];
                trainer = GptTrainer.Create(fields.Where(f => f.Given(p)).Aggregate(basis, (c, f) => f.Apply(c, p)), dev, replaceExisting: p.GetValue(force));
            }

            TrainOutcome outcome;
            try
            {
                outcome = RunInterruptibly(trainer, output, error);
            }
            catch (TrainingDivergedException)
            {
                SavePlot(trainer, output); // the curve up to the divergence shows how it happened
                throw;
            }
            string outDirPath = trainer.Config.OutDir;
            SavePlot(trainer, output);
            if (outcome == TrainOutcome.Interrupted)
            {
                error.WriteLine($"interrupted at step {trainer.Iter}: checkpoint of step {trainer.CheckpointIter} in {Path.Combine(outDirPath, Models.Training.GptCheckpoint.FileName)}; " +
                                $"continue with: mt train {arch.Name} --resume --out-dir {outDirPath}");
                return InterruptedExitCode;
            }
            output.WriteLine($"best val loss {trainer.BestValLoss:F4}" + ScalerNote(trainer.Loop));
            if (DeviceMemory.Stats(dev) is { } mem)
                output.WriteLine($"device memory: peak {mem.DescribePeak()}, {mem.DeviceAllocations} driver allocations");
            int n = p.GetValue(sampleLength);
            if (n > 0)
            {
                output.WriteLine("---- sample ----");
                SampleCommand.Sample(trainer.Model, trainer.Tokenizer, "\n", n, new SamplerOptions(0.8f, TopK: 200, Seed: 1337), output);
                output.WriteLine();
            }
            return 0;
        });

        return gpt;
    }

    /// <summary>
    /// Runs the loop with Ctrl-C (and SIGTERM) turned into a request to stop after the current step, which the trainer
    /// then checkpoints. A second Ctrl-C is left to the runtime: it ends the process at once (an interrupted checkpoint
    /// write leaves only a temporary file, removed at the next start).
    /// </summary>
    private static TrainOutcome RunInterruptibly(GptTrainer trainer, TextWriter output, TextWriter error)
    {
        using var stop = new CancellationTokenSource();
        void OnSignal(PosixSignalContext ctx)
        {
            if (stop.IsCancellationRequested) return; // the second one terminates
            ctx.Cancel = true;
            error.WriteLine("stopping after this step to save a checkpoint (Ctrl-C again to quit at once)");
            stop.Cancel();
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        return Run(trainer, output, stop.Token);
    }

    /// <summary>Runs the loop under a live progress bar when writing to a terminal, else with plain lines.</summary>
    private static TrainOutcome Run(GptTrainer trainer, TextWriter output, CancellationToken stop)
    {
        bool live = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (!live) return trainer.Run(new PlainTrainProgress(output), stop);
        var outcome = TrainOutcome.Finished;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx => outcome = trainer.Run(new LiveTrainProgress(ctx.AddTask("training"), output), stop));
        return outcome;
    }

    /// <summary>For an fp16 run, where the loss scale ended and how many steps overflowed (skipped, as torch's GradScaler does).</summary>
    internal static string ScalerNote(TrainingLoop loop) =>
        loop.Scaler is { } s ? $" (fp16 loss scale {s.Scale:G}, {loop.SkippedSteps} overflowed steps skipped)" : "";

    private static void SavePlot(GptTrainer trainer, TextWriter output)
    {
        string png = Path.Combine(trainer.Config.OutDir, "loss.png");
        LossPlot.Save(trainer.History, png, $"{trainer.Config.Arch} {trainer.Config.NLayer}x{trainer.Config.NEmbd} on {Path.GetFileName(trainer.Config.DataPath)}");
        output.WriteLine($"loss curve: {png}");
    }
}
