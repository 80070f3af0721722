using System.CommandLine;
using System.Diagnostics;
using ManagedTensor.Models;
using ManagedTensor.Models.Adapters;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Tokenizers;
using ManagedTensor.Models.Training;
using ManagedTensor.Nn;
using Spectre.Console;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt finetune`: LoRA or QLoRA (--quantize nf4|q4_0) fine-tuning of any model `mt generate` reads, on a text file or a
/// JSONL instruction file, with `mt train`'s progress bar, evaluations, checkpoints (adapter only), exact --resume and
/// loss plot (<see cref="FinetuneTrainer"/>). The adapter is written in PEFT's layout to --out-dir; --merge OUT also
/// writes the base with the adapter merged in (a GGUF file, for Llama models). `--adapter DIR` skips training: it loads
/// a PEFT adapter (made here or by PEFT) onto the base, checking every key and shape, and merges it with --merge.
/// </summary>
public static class FinetuneCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var cmd = new Command("finetune", "LoRA / QLoRA fine-tuning of a language model on a text or JSONL instruction file; adapters in PEFT's layout");
        var d = new FinetuneConfig();
        var fields = new List<FieldOption<FinetuneConfig>>();
        Option<T> Add<T>(string name, string description, Func<FinetuneConfig, T> get, Func<FinetuneConfig, T, FinetuneConfig> set, bool safeOnResume = false)
        {
            var option = new Option<T>(name) { Description = description, DefaultValueFactory = _ => get(d) };
            cmd.Options.Add(option);
            fields.Add(new FieldOption<FinetuneConfig>(option, safeOnResume, c => get(c)!, p => p.GetValue(option)!, (c, p) => set(c, p.GetValue(option)!)));
            return option;
        }
        var model = Add("--model", "the base: llama2.c .bin, GGUF, Hugging Face directory (Llama, Mistral, GPT-2), llm.c GPT-2 .bin, `mt train gpt` out-dir",
            c => c.Model, (c, v) => c with { Model = v });
        model.Aliases.Add("-m");
        var tokenizer = new Option<string?>("--tokenizer") { Description = "a tokenizer other than the model's own (llama2.c tokenizer.bin, tokenizer.json, GPT-2's vocab.json)" };
        cmd.Options.Add(tokenizer);
        Add("--data", "a text file (every token is trained on) or a JSONL file of {\"instruction\",\"input\",\"output\"} or {\"messages\": [...]} (loss on the responses only)",
            c => c.DataPath, (c, v) => c with { DataPath = v });
        Add("--template", "chat template for JSONL examples: auto (the model's own, else plain) or chatml, llama2, llama3, zephyr, ...", c => c.Template, (c, v) => c with { Template = v });
        var outDir = Add("--out-dir", "folder of the run: the PEFT adapter, adapter checkpoints, best/, loss.png", c => c.OutDir, (c, v) => c with { OutDir = v });
        Add("--lora-r", "LoRA rank r", c => c.LoraR, (c, v) => c with { LoraR = v });
        Add("--lora-alpha", "LoRA alpha (the update is scaled by alpha / r)", c => c.LoraAlpha, (c, v) => c with { LoraAlpha = v });
        Add("--lora-dropout", "dropout on the adapters' input", c => c.LoraDropout, (c, v) => c with { LoraDropout = v });
        Add("--target-modules", "Linear layers to adapt: a comma list of names (q_proj,k_proj,v_proj,o_proj) or all-linear (every Linear but lm_head)",
            c => c.TargetModules, (c, v) => c with { TargetModules = v });
        var quantize = Add("--quantize", "QLoRA: the base's Linear weights in a 4-bit block format (nf4 or q4_0), or none", c => c.Quantize, (c, v) => c with { Quantize = v });
        quantize.AcceptOnlyFromAmong("none", "nf4", "q4_0", "q8_0");
        Add("--iters", "optimizer steps", c => c.MaxIters, (c, v) => c with { MaxIters = v }, safeOnResume: true);
        Add("--lr", "peak learning rate (cosine decay to lr/10 at --iters)", c => c.LearningRate, (c, v) => c with { LearningRate = v });
        Add("--warmup-iters", "linear warm-up steps", c => c.WarmupIters, (c, v) => c with { WarmupIters = v });
        Add("--batch-size", "sequences per micro-batch", c => c.BatchSize, (c, v) => c with { BatchSize = v });
        Add("--block-size", "tokens per sequence", c => c.BlockSize, (c, v) => c with { BlockSize = v });
        Add("--grad-accum", "micro-batches per step", c => c.GradAccumSteps, (c, v) => c with { GradAccumSteps = v });
        Add("--weight-decay", "AdamW decay of the adapters", c => c.WeightDecay, (c, v) => c with { WeightDecay = v });
        Add("--grad-clip", "max gradient norm (0: off)", c => c.GradClip, (c, v) => c with { GradClip = v });
        Add("--optim", ConfigOptions.OptimDescription, c => c.Optim, (c, v) => c with { Optim = v }).Choices(MixedPrecision.OptimKinds);
        Add("--autocast", ConfigOptions.AutocastDescription, c => c.Autocast, (c, v) => c with { Autocast = v }).Choices(MixedPrecision.AutocastModes);
        Add("--eval-interval", "evaluate and checkpoint every N steps", c => c.EvalInterval, (c, v) => c with { EvalInterval = v }, safeOnResume: true);
        Add("--eval-iters", "batches per evaluation", c => c.EvalIters, (c, v) => c with { EvalIters = v });
        Add("--log-interval", "print every N steps", c => c.LogInterval, (c, v) => c with { LogInterval = v }, safeOnResume: true);
        Add("--seed", "seed of the adapters' init, batches and dropout", c => c.Seed, (c, v) => c with { Seed = v });
        var device = Cli.DeviceOption();
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out-dir (only --iters, --eval-interval and --log-interval may change)" };
        var force = new Option<bool>("--force") { Description = "start a new run even though --out-dir holds one" };
        var merge = new Option<string?>("--merge") { Description = "after training, write the base with the adapter merged in to this GGUF file (Llama models)" };
        var adapter = new Option<string?>("--adapter") { Description = "no training: load this PEFT adapter directory (made here or by PEFT) onto --model and write the merged model with --merge" };
        cmd.Options.Add(device);
        cmd.Options.Add(resume);
        cmd.Options.Add(force);
        cmd.Options.Add(merge);
        cmd.Options.Add(adapter);

        cmd.SetAction(p =>
        {
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            if (p.GetValue(merge) is { } mergePath) Models.IO.AtomicFile.EnsureWritable(mergePath, "--merge");
            var clock = Stopwatch.StartNew();
            FinetuneConfig Given() => fields.Where(f => f.Given(p)).Aggregate(d, (c, f) => f.Apply(c, p))
                with { Tokenizer = MtApp.TokenizerFor(p.GetValue(model)!, p.GetValue(tokenizer)) };
            if (p.GetValue(adapter) is { } adapterDir) return LoadAdapter(adapterDir, Given(), dev, p.GetValue(merge), output);
            FinetuneTrainer trainer;
            if (p.GetValue(resume))
            {
                if (p.GetValue(force)) throw new UserErrorException("--force starts a new run and --resume continues one: give one of them");
                string dir = p.GetValue(outDir)!;
                trainer = FinetuneTrainer.Resume(dir, dev, run => ConfigOptions.ChangesOnResume(run, fields, p, dir, error));
            }
            else trainer = FinetuneTrainer.Create(Given(), dev, replaceExisting: p.GetValue(force));

            if (p.GetValue(merge) is not null) CheckMergeable(trainer.Loaded); // before training, not after
            var cfg = trainer.Config;
            output.WriteLine($"model: {cfg.Model} ({trainer.Lm.Architecture}), {trainer.TotalCount / 1e6:F3}M values; data: {cfg.DataPath}, {trainer.Data.Describe()}" +
                             (trainer.Data.Dropped > 0 ? $" ({trainer.Data.Dropped} dropped: no response within --block-size)" : ""));
            if (cfg.QuantizeFormat is { } q)
                output.WriteLine($"QLoRA base: {trainer.QuantizedLayers.Count} Linear weights in {q}" +
                                 (trainer.SkippedLayers.Count > 0 ? $"; kept float: {string.Join(", ", trainer.SkippedLayers.Take(3))}{(trainer.SkippedLayers.Count > 3 ? $" and {trainer.SkippedLayers.Count - 3} more" : "")}" : ""));
            output.WriteLine($"LoRA r={cfg.LoraR} alpha={cfg.LoraAlpha:G} dropout={cfg.LoraDropout:G} on {Lora.Adapted(trainer.Model).Count} layers ({cfg.TargetModules}): " +
                             $"{trainer.TrainableCount:N0} trainable values, {100.0 * trainer.TrainableCount / trainer.TotalCount:F2}% of {trainer.TotalCount:N0}");
            if (cfg.Optim != "adamw" || cfg.Autocast != "off") output.WriteLine($"optimizer {cfg.Optim}, autocast {cfg.Autocast}");
            if (trainer.Iter > 0) output.WriteLine($"resuming from {cfg.OutDir} at iteration {trainer.Iter}");

            var outcome = TrainOutcome.Finished;
            try
            {
                outcome = RunInterruptibly(trainer, output, error);
            }
            finally
            {
                SavePlot(trainer, output);
            }
            // What the run cost, also when interrupted (the device peak is what `mt plan` predicts).
            string resources = $"wall time {clock.Elapsed.TotalSeconds:F1} s, peak RSS {Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0:F0} MiB" + DeviceMemoryLine(dev);
            if (outcome == TrainOutcome.Interrupted)
            {
                error.WriteLine($"interrupted at step {trainer.Iter}: checkpoint of step {trainer.CheckpointIter} in {FinetuneTrainer.PathIn(cfg.OutDir)}; " +
                                $"continue with: mt finetune --resume --out-dir {cfg.OutDir}");
                output.WriteLine(resources);
                return TrainCommand.InterruptedExitCode;
            }
            var evals = trainer.History.Where(h => h.Val is not null).ToList();
            output.WriteLine($"val loss {evals[0].Val:F4} (step {evals[0].Iter}) -> {evals[^1].Val:F4} (step {evals[^1].Iter}), best {trainer.BestValLoss:F4}; adapter in {cfg.OutDir} (PEFT layout)" + TrainCommand.ScalerNote(trainer.Loop));
            output.WriteLine(resources);
            if (p.GetValue(merge) is { } outPath) WriteMerged(trainer.Loaded, outPath, output);
            return 0;
        });
        return cmd;
    }

    private static string DeviceMemoryLine(Device dev) =>
        DeviceMemory.Stats(dev) is { } mem ? $", device memory peak {mem.DescribePeak()}" : "";

    /// <summary>`--adapter DIR`: the base with a PEFT adapter loaded (keys and shapes checked), and the merged model with --merge.</summary>
    private static int LoadAdapter(string dir, FinetuneConfig cfg, Device dev, string? mergePath, TextWriter output)
    {
        var loaded = Models.Generation.ModelLoader.Open(Models.Data.DataFiles.Find(cfg.Model), cfg.Tokenizer, dev);
        var root = loaded.Model as Module ?? throw new UserErrorException($"--model {cfg.Model}: not a module tree LoRA can adapt");
        var lora = PeftAdapter.Load(dir, root);
        output.WriteLine($"loaded {dir}: LoRA r={lora.Rank} alpha={lora.Alpha:G} on {Lora.Adapted(root).Count} layers of {cfg.Model}");
        if (mergePath is not null) WriteMerged(loaded, mergePath, output);
        return 0;
    }

    /// <summary>Merges the adapters into the base weights and writes a GGUF file (F32) that `mt generate -m` reads.</summary>
    private static void WriteMerged(Models.Generation.LoadedModel loaded, string path, TextWriter output)
    {
        var (llama, tok) = CheckMergeable(loaded);
        int n = Lora.Merge(llama);
        GgufLlama.Save(llama, tok, path, GgmlType.F32);
        output.WriteLine($"merged {n} adapters into the base: {path} (GGUF, F32; run it with mt generate -m {path})");
    }

    private static (Llama, LlamaTokenizer) CheckMergeable(Models.Generation.LoadedModel loaded) =>
        loaded.Model is Llama llama && loaded.Tokenizer is LlamaTokenizer tok ? (llama, tok)
            : throw new UserErrorException($"--merge writes GGUF, which needs a Llama model with a sentencepiece tokenizer; this base is {loaded.Model.Architecture} " +
                                           $"with a {loaded.Tokenizer.Kind} tokenizer: use the PEFT adapter in --out-dir with the base instead");

    private static TrainOutcome RunInterruptibly(FinetuneTrainer trainer, TextWriter output, TextWriter error)
    {
        using var stop = new CancellationTokenSource();
        void OnSignal(System.Runtime.InteropServices.PosixSignalContext ctx)
        {
            if (stop.IsCancellationRequested) return;
            ctx.Cancel = true;
            error.WriteLine("stopping after this step to save a checkpoint (Ctrl-C again to quit at once)");
            stop.Cancel();
        }
        using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, OnSignal);
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, OnSignal);
        bool live = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (!live) return trainer.Run(new PlainTrainProgress(output) { MaxIters = trainer.Config.MaxIters }, stop.Token);
        var outcome = TrainOutcome.Finished;
        AnsiConsole.Progress().AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("fine-tuning");
                task.MaxValue = Math.Max(1, trainer.Config.MaxIters);
                task.Value = trainer.Iter;
                outcome = trainer.Run(new LiveTrainProgress(task, output) { MaxIters = trainer.Config.MaxIters }, stop.Token);
            });
        return outcome;
    }

    private static void SavePlot(FinetuneTrainer trainer, TextWriter output)
    {
        if (trainer.History.Count == 0) return;
        string png = Path.Combine(trainer.Config.OutDir, "loss.png");
        LossPlot.Save(trainer.History, png, $"LoRA r={trainer.Config.LoraR}{(trainer.Config.Quantize != "none" ? $" ({trainer.Config.Quantize} base)" : "")} on {Path.GetFileName(trainer.Config.DataPath)}");
        output.WriteLine($"loss curve: {png}");
    }
}
