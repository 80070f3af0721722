using System.CommandLine;
using System.Runtime.InteropServices;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Diffusion;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Vision;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt diffuse train --arch unet|dit` trains a class-conditional denoiser on Fashion-MNIST (checkpoints, exact
/// --resume, loss.png, a sample grid every --sample-every steps); `mt diffuse sample` draws a grid with DDIM or DDPM
/// and classifier-free guidance; `mt diffuse eval` judges a model with the classifier of `mt classify train`
/// (class consistency and a classifier-feature FID, which is not Inception FID).
/// </summary>
public static class DiffuseCommand
{
    public const string DefaultOutDir = "out-diffusion";

    public static Command Create(TextWriter output, TextWriter error)
    {
        var cmd = new Command("diffuse", "image generation: DDPM/DDIM with a U-Net or a DiT on Fashion-MNIST");
        cmd.Subcommands.Add(TrainCommand(output, error));
        cmd.Subcommands.Add(SampleCommand(output));
        cmd.Subcommands.Add(EvalCommand(output));
        return cmd;
    }

    private static Command TrainCommand(TextWriter output, TextWriter error)
    {
        var m = new DiffusionConfig();
        var t = new DiffusionTrainConfig();
        var arch = new Option<string>("--arch") { Description = "denoiser: unet (DDPM's U-Net) or dit (a small DiT)", DefaultValueFactory = _ => m.Arch };
        arch.AcceptOnlyFromAmong(DiffusionConfig.Archs);
        var data = ClassifyCommand.DataOption();
        var outDir = new Option<string>("--out-dir") { Description = "folder for diffusion.safetensors, loss.png and the sample grids", DefaultValueFactory = _ => DefaultOutDir };
        var maxSteps = new Option<int>("--max-steps") { Description = "optimizer steps in all (may change on --resume)", DefaultValueFactory = _ => t.MaxSteps }.AtLeast(1);
        var batch = new Option<int>("--batch-size") { Description = "images per step", DefaultValueFactory = _ => t.BatchSize }.AtLeast(1);
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate after warm-up", DefaultValueFactory = _ => t.LearningRate }.Within(0, minExclusive: true);
        var schedule = new Option<string>("--schedule") { Description = "noise schedule: linear or cosine", DefaultValueFactory = _ => m.Schedule };
        schedule.AcceptOnlyFromAmong("linear", "cosine");
        var prediction = new Option<string>("--prediction") { Description = "what the network predicts: eps (the noise) or v", DefaultValueFactory = _ => m.Prediction };
        prediction.AcceptOnlyFromAmong("eps", "v");
        var sampleEvery = new Option<int>("--sample-every") { Description = "checkpoint and write samples_STEP.png every N steps", DefaultValueFactory = _ => t.SampleEvery }.AtLeast(1);
        var sampleSteps = new Option<int>("--sample-steps") { Description = "DDIM steps of the sample grids written during training", DefaultValueFactory = _ => t.SampleSteps }.AtLeast(1);
        var ema = new Option<double>("--ema") { Description = "decay of the weights' moving average that samples are drawn from", DefaultValueFactory = _ => t.EmaDecay };
        var imageSize = new Option<int>("--image-size") { Description = "side the 28x28 images are padded to with black (28: none; each U-Net level halves it)", DefaultValueFactory = _ => m.ImageSize }.AtLeast(FashionMnist.Side);
        var mults = new Option<string>("--channel-mults") { Description = "U-Net channel multiplier per resolution, comma-separated (each halves the size)", DefaultValueFactory = _ => m.ChannelMults };
        var channels = new Option<int>("--channels") { Description = "U-Net base channels (a multiple of 8)", DefaultValueFactory = _ => m.UnetChannels }.AtLeast(8);
        var patch = new Option<int>("--patch") { Description = "DiT patch size (2 or 4 for 32x32)", DefaultValueFactory = _ => m.PatchSize }.AtLeast(1);
        var hidden = new Option<int>("--hidden") { Description = "DiT width", DefaultValueFactory = _ => m.DitHidden }.AtLeast(4);
        var depth = new Option<int>("--depth") { Description = "DiT blocks", DefaultValueFactory = _ => m.DitDepth }.AtLeast(1);
        var limit = new Option<int>("--limit") { Description = "train on the first N images only (0: all)", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var seed = new Option<ulong>("--seed") { Description = "seed of the weights, batches, steps and noise", DefaultValueFactory = _ => t.Seed };
        var logInterval = new Option<int>("--log-interval") { Description = "print the loss every N steps", DefaultValueFactory = _ => t.LogInterval }.AtLeast(1);
        var classes = new Option<string>("--classes") { Description = "train only on these classes' images: a list such as 0-8 or 9 or 1,3,5 (empty: every class)", DefaultValueFactory = _ => t.Classes };
        var baseRun = new Option<string>("--base") { Description = "start from this trained run's EMA weights and model (its --out-dir); with --lora-rank, adapt it", DefaultValueFactory = _ => t.Base };
        var loraRank = new Option<int>("--lora-rank") { Description = "LoRA rank r of adapters on --lora-targets (needs --base; 0: train every weight)", DefaultValueFactory = _ => t.LoraRank }.AtLeast(0);
        var loraAlpha = new Option<double>("--lora-alpha") { Description = "LoRA alpha (updates scaled by alpha / r)", DefaultValueFactory = _ => t.LoraAlpha };
        var loraTargets = new Option<string>("--lora-targets") { Description = "Linear layers that get adapters: names (qkv,proj,emb_proj) or all-linear", DefaultValueFactory = _ => t.LoraTargets };
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out-dir exactly (only --max-steps and --device may be given)" };
        var force = new Option<bool>("--force") { Description = "start a new run even though --out-dir holds one" };
        var device = Cli.DeviceOption("cpu");
        Option[] modelShaping = [arch, schedule, prediction, imageSize, mults, channels, patch, hidden, depth];
        Option[] shaping = [.. modelShaping, data, batch, lr, sampleEvery, sampleSteps, ema, limit, seed, logInterval, classes, baseRun, loraRank, loraAlpha, loraTargets];
        var cmd = new Command("train", "train a class-conditional denoiser on Fashion-MNIST (28x28 padded to 32x32), or adapt one with LoRA (--base, --lora-rank)")
        {
            arch, data, outDir, maxSteps, batch, lr, schedule, prediction, sampleEvery, sampleSteps, ema, imageSize, mults, channels, patch, hidden, depth, limit, seed, logInterval,
            classes, baseRun, loraRank, loraAlpha, loraTargets, resume, force, device,
        };
        cmd.SetAction(p =>
        {
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            string dir = p.GetValue(outDir)!;
            DiffusionTrainer trainer;
            if (p.GetValue(resume))
            {
                var given = shaping.Where(o => p.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList();
                if (given.Count > 0)
                    throw new UserErrorException($"--resume continues the run in {dir} with its own settings; {string.Join(", ", given)} cannot be given (only --max-steps and --device)");
                trainer = DiffusionTrainer.Resume(dir, dev, p.GetResult(maxSteps) is { Implicit: false } ? p.GetValue(maxSteps) : null);
            }
            else
            {
                if (p.GetValue(baseRun)!.Length > 0 && modelShaping.Where(o => p.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList() is { Count: > 0 } fixedByBase)
                    throw new UserErrorException($"--base {p.GetValue(baseRun)} brings its own model; {string.Join(", ", fixedByBase)} cannot be given with it");
                var mc = m with
                {
                    Arch = p.GetValue(arch)!, ImageSize = p.GetValue(imageSize), Schedule = p.GetValue(schedule)!, Prediction = p.GetValue(prediction)!,
                    UnetChannels = p.GetValue(channels), ChannelMults = p.GetValue(mults)!, PatchSize = p.GetValue(patch), DitHidden = p.GetValue(hidden), DitDepth = p.GetValue(depth),
                };
                var tc = t with
                {
                    OutDir = dir, DataDir = Path.GetFullPath(FashionMnist.FindFolder(p.GetValue(data))), MaxSteps = p.GetValue(maxSteps),
                    BatchSize = p.GetValue(batch), LearningRate = p.GetValue(lr), EmaDecay = p.GetValue(ema), SampleEvery = p.GetValue(sampleEvery), SampleSteps = p.GetValue(sampleSteps), Limit = p.GetValue(limit),
                    Seed = p.GetValue(seed), LogInterval = p.GetValue(logInterval), Classes = p.GetValue(classes)!,
                    Base = p.GetValue(baseRun)! is { Length: > 0 } b ? Path.GetFullPath(b) : "", LoraRank = p.GetValue(loraRank), LoraAlpha = p.GetValue(loraAlpha), LoraTargets = p.GetValue(loraTargets)!,
                };
                trainer = DiffusionTrainer.Create(mc, tc, dev, p.GetValue(force));
            }
            var mcfg = trainer.ModelConfig;
            output.WriteLine($"data: {trainer.Config.DataDir}{(trainer.Config.Limit > 0 ? $" (first {trainer.Config.Limit:N0} images)" : "")}");
            output.WriteLine($"model: {Describe(mcfg)}: {trainer.Model.ParameterCount():N0} parameters on {dev}; {mcfg.Schedule} schedule, {mcfg.TrainSteps} steps, {mcfg.Prediction}-prediction");
            var tcfg = trainer.Config;
            if (tcfg.Classes.Length > 0) output.WriteLine($"classes: {string.Join(", ", tcfg.ClassList(mcfg.Classes).Select(k => $"{k} {FashionMnist.ClassNames[k]}"))}");
            if (tcfg.Base.Length > 0)
            {
                long trainable = trainer.Model.Parameters().Where(w => w.RequiresGrad).Sum(w => (long)w.Numel);
                output.WriteLine($"from {tcfg.Base} (EMA weights){(tcfg.LoraRank > 0 ? $"; LoRA r={tcfg.LoraRank}, alpha {tcfg.LoraAlpha} on {tcfg.LoraTargets}, class embedding trainable" : "")}: {trainable:N0} trainable parameters ({100.0 * trainable / trainer.Model.ParameterCount():F1}%)");
            }
            RunInterruptibly(trainer, output, error);
            string png = Path.Combine(trainer.Config.OutDir, "loss.png");
            LossPlot.Save(trainer.History, png, $"{mcfg.Arch} on Fashion-MNIST", "mean squared error");
            output.WriteLine($"loss curve: {png}");
            if (trainer.Step < trainer.Config.MaxSteps)
            {
                error.WriteLine($"interrupted at step {trainer.Step}; continue with: mt diffuse train --resume --out-dir {trainer.Config.OutDir}");
                return 130;
            }
            return 0;
        });
        return cmd;
    }

    private static string Describe(DiffusionConfig c) => c.Arch == "unet"
        ? $"U-Net {c.UnetChannels} channels x ({c.ChannelMults}), {c.ResBlocks} ResBlock{(c.ResBlocks == 1 ? "" : "s")} per level"
        : $"DiT patch {c.PatchSize}, width {c.DitHidden}, depth {c.DitDepth}, {c.DitHeads} heads";

    /// <summary>Ctrl-C (or SIGTERM) stops after the current step and checkpoints it; a second one ends the process.</summary>
    private static void RunInterruptibly(DiffusionTrainer trainer, TextWriter output, TextWriter error)
    {
        using var stop = new CancellationTokenSource();
        void OnSignal(PosixSignalContext ctx)
        {
            if (stop.IsCancellationRequested) return;
            ctx.Cancel = true;
            error.WriteLine("stopping after this step to save a checkpoint (Ctrl-C again to quit at once)");
            stop.Cancel();
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        PlainImageProgress.Run(output, o => trainer.Run(o, stop.Token));
    }

    /// <summary>--sampler, --steps, --cfg, --eta and --seed, shared by sample and eval.</summary>
    private sealed record SamplerFlags(Option<string> Method, Option<int> Steps, Option<double> Cfg, Option<double> Eta, Option<ulong> Seed)
    {
        public static SamplerFlags Create()
        {
            var method = new Option<string>("--sampler") { Description = "ddim (deterministic with --eta 0, few steps) or ddpm (ancestral)", DefaultValueFactory = _ => "ddim" };
            method.AcceptOnlyFromAmong("ddim", "ddpm");
            return new(method,
                new Option<int>("--steps") { Description = "denoising steps (1 .. the model's diffusion steps)", DefaultValueFactory = _ => 50 },
                new Option<double>("--cfg") { Description = "classifier-free guidance scale (1: conditional only, 0: unconditional)", DefaultValueFactory = _ => 3.0 },
                new Option<double>("--eta") { Description = "DDIM noise (0: deterministic, 1: as DDPM)", DefaultValueFactory = _ => 0.0 },
                new Option<ulong>("--seed") { Description = "seed of the starting noise", DefaultValueFactory = _ => 0UL });
        }

        public IEnumerable<Option> All => [Method, Steps, Cfg, Eta, Seed];

        public SamplerOptions Get(ParseResult p) => new(p.GetValue(Method)!, p.GetValue(Steps), p.GetValue(Cfg), p.GetValue(Eta), p.GetValue(Seed));
    }

    private static Command SampleCommand(TextWriter output)
    {
        var model = new Option<string>("--model", "-m") { Description = "a `mt diffuse train` --out-dir or its diffusion.safetensors", DefaultValueFactory = _ => DefaultOutDir };
        var cls = new Option<int?>("--class") { Description = "class id to draw (0..9: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot); default: every class in turn" };
        var count = new Option<int>("--count", "-n") { Description = "images in the grid", DefaultValueFactory = _ => 20 }.AtLeast(1);
        var outPng = new Option<string>("--out", "-o") { Description = "PNG to write", DefaultValueFactory = _ => "samples.png" };
        var noEma = new Option<bool>("--no-ema") { Description = "use the trained weights instead of their moving average" };
        var flags = SamplerFlags.Create();
        var device = Cli.DeviceOption("cpu");
        var cmd = new Command("sample", "draw a grid of images from a trained denoiser") { model, cls, count, outPng, noEma, device };
        foreach (var o in flags.All) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            var opts = flags.Get(p);
            opts.Validate(int.MaxValue); // the step count's upper bound is the model's, checked once it is loaded
            string png = p.GetValue(outPng)!;
            AtomicFile.EnsureWritable(png, "--out");
            var net = DiffusionCheckpoint.LoadModel(p.GetValue(model)!, Cli.ParseDevice(p.GetValue(device)!), ema: !p.GetValue(noEma));
            opts.Validate(net.Config.TrainSteps);
            int classes = net.Config.Classes, n = p.GetValue(count);
            int? k = p.GetValue(cls);
            if (k is int c && (c < 0 || c >= classes)) throw new UserErrorException($"--class {c}: not a class id (0..{classes - 1})");
            var labels = Enumerable.Range(0, n).Select(i => k ?? i % classes).ToArray();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var images = Sampler.Sample(net, labels, opts);
            GrayImage.SaveGrid(png, images, k is null ? classes : Math.Min(n, 10));
            output.WriteLine($"{n} image{(n == 1 ? "" : "s")} ({(k is int kk ? FashionMnist.ClassNames[kk] : "one column per class")}; {opts.Method} {opts.Steps} steps, cfg {opts.Cfg}) in {clock.Elapsed.TotalSeconds:F1} s -> {png}");
            return 0;
        });
        return cmd;
    }

    private static Command EvalCommand(TextWriter output)
    {
        var model = new Option<string>("--model", "-m") { Description = "a `mt diffuse train` --out-dir or its diffusion.safetensors", DefaultValueFactory = _ => DefaultOutDir };
        var classifier = new Option<string>("--classifier") { Description = "the judge: an `mt classify train` --out-dir or its classifier.safetensors", DefaultValueFactory = _ => ClassifyCommand.DefaultOutDir };
        var count = new Option<int>("--count", "-n") { Description = "images to generate (and test images to compare with)", DefaultValueFactory = _ => 1000 }.AtLeast(10);
        var floor = new Option<bool>("--floor") { Description = "also the FID of --count test images against as many training images (the floor a perfect model reaches)" };
        var real = new Option<bool>("--real") { Description = "judge real training images in place of samples, through the same path (a check of the judge: expect the classifier's accuracy)" };
        var onlyClass = new Option<int?>("--class") { Description = "judge samples of this class only, against the test images of that class (e.g. a class taught by LoRA)" };
        var data = ClassifyCommand.DataOption();
        var flags = SamplerFlags.Create();
        var cmd = new Command("eval", "class consistency and classifier-feature FID (not Inception FID) of a denoiser's samples") { model, classifier, count, floor, real, onlyClass, data };
        foreach (var o in flags.All) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            var opts = flags.Get(p);
            opts.Validate(int.MaxValue);
            var clf = FashionClassifier.Load(p.GetValue(classifier)!, Device.Cpu);
            var net = DiffusionCheckpoint.LoadModel(p.GetValue(model)!, Device.Cpu);
            opts.Validate(net.Config.TrainSteps);
            int n = p.GetValue(count);
            string dir = FashionMnist.FindFolder(p.GetValue(data));
            int? k = p.GetValue(onlyClass);
            if (k is int kc && (kc < 0 || kc >= net.Config.Classes)) throw new UserErrorException($"--class {kc}: not a class id (0..{net.Config.Classes - 1})");
            bool onReal = p.GetValue(real);
            if (onReal && k is not null) throw new UserErrorException("--real judges every class; --class cannot be given with it");
            var test = k is int c ? FashionMnist.Load(dir, "t10k").OfClasses([c]) : FashionMnist.Load(dir, "t10k", n);
            var r = onReal
                ? DiffusionEval.RunOnRealImages(net.Config, clf, FashionMnist.Load(dir, "train"), test, n)
                : DiffusionEval.Run(net, clf, test, n, opts, (done, all) => { }, k is int only ? [only] : null);
            output.WriteLine(onReal
                ? $"{n} real training images in place of samples (padded to {net.Config.ImageSize} and cropped back, as samples are) vs {test.Count} test images, in {r.Seconds:F0} s:"
                : $"{n} samples{(k is int kk ? $" of class {kk} ({FashionMnist.ClassNames[kk]})" : "")} ({opts.Method} {opts.Steps} steps, cfg {opts.Cfg}) vs {test.Count} test images, in {r.Seconds:F0} s:");
            output.WriteLine($"  class consistency {r.ClassConsistency:P1} (the classifier names the class each sample was drawn for)");
            output.WriteLine($"  classifier-feature FID {r.Fid:F2} (on the classifier's {clf.Config.Hidden} penultimate features, not Inception-v3's: comparable only within this project)");
            if (p.GetValue(floor))
            {
                var train = FashionMnist.Load(dir, "train", n);
                output.WriteLine($"  floor: FID of {test.Count} test vs {train.Count} training images {DiffusionEval.Fid(clf, test, train):F2}");
            }
            return 0;
        });
        return cmd;
    }
}
