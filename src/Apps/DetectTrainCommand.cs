using System.CommandLine;
using System.Runtime.InteropServices;
using ManagedTensor.Models.Detection;
using ManagedTensor.Models.Detection.Yolo;
using ManagedTensor.Models.IO;
using Spectre.Console;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt detect train` and `mt detect val`: a YOLOv8 trained on a dataset in the Ultralytics layout (by default the
/// procedural shapes set, written first if missing), evaluated by COCO mAP per class.
/// </summary>
public static class DetectTrainCommand
{
    public const string DefaultData = "shapes-data";

    public static Command Train(TextWriter output, TextWriter error)
    {
        var d = new YoloTrainConfig(DefaultData);
        var data = new Option<string>("--data") { Description = $"dataset folder (data.yaml, images/, labels/) or its data.yaml; the default {DefaultData} is written by `mt detect make-data` if missing", DefaultValueFactory = _ => d.Data };
        var model = new Option<string>("--model") { Description = $"{string.Join(", ", YoloConfig.Sizes)}", DefaultValueFactory = _ => d.Model };
        var epochs = new Option<int>("--epochs") { Description = "epochs (may change on --resume)", DefaultValueFactory = _ => d.Epochs }.AtLeast(1);
        var imgsz = new Option<int>("--imgsz") { Description = "square input side, a multiple of 32", DefaultValueFactory = _ => d.ImgSz }.AtLeast(32);
        var batch = new Option<int>("--batch") { Description = "images per step", DefaultValueFactory = _ => d.Batch }.AtLeast(1);
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate after warm-up", DefaultValueFactory = _ => d.Lr };
        var seed = new Option<int>("--seed", "-s") { Description = "seed of the weights, the order and the augmentation", DefaultValueFactory = _ => d.Seed };
        var outDir = new Option<string>("--out", "-o") { Description = "run folder: last.safetensors, best.safetensors, losses.png", DefaultValueFactory = _ => d.OutDir };
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out from its last epoch" };
        var force = new Option<bool>("--force") { Description = "replace a run already in --out" };
        var device = Cli.DeviceOption("cpu");
        var cmd = new Command("train", "train a YOLOv8 detector (default: yolov8n on the procedural shapes set at 128 x 128)")
        {
            data, model, epochs, imgsz, batch, lr, seed, outDir, resume, force, device,
        };
        cmd.SetAction(p =>
        {
            var config = new YoloTrainConfig(p.GetValue(data)!, p.GetValue(model)!, p.GetValue(epochs), p.GetValue(imgsz), p.GetValue(batch), p.GetValue(lr),
                d.WeightDecay, d.WarmupIters, d.FinalLrFraction, p.GetValue(seed), p.GetValue(outDir)!);
            try { config.Validate(); } catch (ArgumentException e) { throw new UserErrorException(e.Message); }
            string dir = config.OutDir;
            bool hasRun = File.Exists(Path.Combine(dir, YoloCheckpoint.LastFileName));
            if (p.GetValue(resume) && !hasRun) throw new UserErrorException($"--resume: no run in {dir} ({YoloCheckpoint.LastFileName} missing)");
            if (!p.GetValue(resume) && hasRun && !p.GetValue(force))
                throw new UserErrorException($"--out {dir}: already holds a run; add --resume to continue it or --force to replace it");
            AtomicFile.EnsureWritableDirectory(dir, "--out");
            if (!p.GetValue(resume)) // --force: nothing of the old run may outlive it (a best.safetensors of other weights)
                foreach (string f in new[] { YoloCheckpoint.LastFileName, YoloCheckpoint.BestFileName, "losses.png" }) File.Delete(Path.Combine(dir, f));
            if (config.Data == DefaultData && !Directory.Exists(DefaultData))
            {
                var (tr, va) = ShapesDataset.Write(DefaultData, new ShapesDataset.Options(1000, 0, config.ImgSz));
                output.WriteLine($"wrote the procedural shapes set to {DefaultData} ({tr} train, {va} val images)");
            }
            var trainer = new YoloTrainer(config, Cli.ParseDevice(p.GetValue(device)!), p.GetValue(resume));
            using var stop = new CancellationTokenSource();
            void OnSignal(PosixSignalContext ctx)
            {
                if (stop.IsCancellationRequested) return;
                ctx.Cancel = true;
                error.WriteLine("stopping at the end of this epoch to save a checkpoint (Ctrl-C again to quit at once)");
                stop.Cancel();
            }
            using (PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal))
            using (PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal))
            {
                bool live = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
                if (!live) trainer.Run(new PlainDetectProgress(output), stop.Token);
                else
                    AnsiConsole.Progress().AutoClear(false)
                        .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                        .Start(ctx => trainer.Run(new LiveDetectProgress(ctx.AddTask("training"), output), stop.Token));
            }
            string png = Path.Combine(dir, "losses.png");
            DetectPlot.Save(trainer.State.History, png, $"{config.Model} on {Path.GetFileName(Path.GetFullPath(config.Data))} at {config.ImgSz}");
            output.WriteLine($"losses and mAP: {png}");
            if (trainer.State.Epochs < config.Epochs)
                output.WriteLine($"stopped after epoch {trainer.State.Epochs}; continue with: mt detect train --out {dir} --data {config.Data} --resume");
            return 0;
        });
        return cmd;
    }

    public static Command Val(TextWriter output)
    {
        var model = new Argument<string>("CHECKPOINT") { Description = "a run folder of mt detect train (its best.safetensors) or a .safetensors checkpoint" };
        var data = new Option<string>("--data") { Description = "dataset folder or data.yaml; when not given, the one the run trained on" };
        var split = new Option<string>("--split") { Description = "train or val", DefaultValueFactory = _ => "val" };
        var device = Cli.DeviceOption("cpu");
        var cmd = new Command("val", "mAP@0.5 and mAP@0.5:0.95 of a trained detector, per class and overall") { model, data, split, device };
        cmd.SetAction(p =>
        {
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            var ck = YoloCheckpoint.Load(p.GetValue(model)!, dev);
            var ds = YoloDataset.Open(p.GetValue(data) ?? ck.Train.Data);
            if (!ds.Names.SequenceEqual(ck.Names)) throw new UserErrorException($"{ds.YamlPath}: classes {string.Join(", ", ds.Names)} differ from the model's ({string.Join(", ", ck.Names)})");
            ck.Model.Fuse();
            var images = ds.Images(p.GetValue(split)!);
            var result = YoloTrainer.Validate(ck.Model, ds, images, ck.Train.ImgSz, dev);
            output.WriteLine($"{"class",-12} {"boxes",6} {"mAP50",7} {"mAP50-95",9}");
            foreach (var c in result.PerClass)
                output.WriteLine($"{ck.Names[c.Class],-12} {c.Truths,6} {c.Ap50,7:F3} {c.Ap50To95,9:F3}");
            output.WriteLine($"{"all",-12} {result.PerClass.Sum(c => c.Truths),6} {result.Map50,7:F3} {result.Map50To95,9:F3}   ({images.Count} images)");
            return 0;
        });
        return cmd;
    }

    /// <summary>A YOLO checkpoint's boxes on <paramref name="image"/>, in its pixels, with class names.</summary>
    public static List<Detection> Predict(YoloCheckpoint.Loaded ck, RgbImage image, double confidence, Device device)
    {
        var (boxed, map) = Letterbox.Apply(image, ck.Train.ImgSz);
        using var noGrad = GradMode.NoGrad();
        var decoded = ck.Model.Predict(YoloPostprocess.ToTensor([boxed], device));
        return YoloPostprocess.Boxes(decoded.ToDoubleArray(), 0, ck.Names.Count, decoded.Shape[2], confidence).Select(map.ToImage).ToList();
    }
}

/// <summary>Plain progress lines (logs, tests).</summary>
public class PlainDetectProgress(TextWriter output) : IYoloTrainObserver
{
    protected TextWriter Output { get; } = output;
    protected int Epochs { get; private set; }

    public virtual void OnStart(YoloTrainer t, int trainImages, int valImages)
    {
        Epochs = t.Config.Epochs;
        Output.WriteLine($"data: {t.Data.YamlPath}, {t.Data.Classes} classes ({string.Join(", ", t.Data.Names)}), {trainImages} train / {valImages} val images");
        Output.WriteLine($"model: {t.Model.Config.Name}, {t.Model.ParameterCount() / 1e6:F2}M parameters, {t.Config.ImgSz} x {t.Config.ImgSz}, batch {t.Config.Batch}, on {t.Device}");
        if (t.State.Epochs > 0) Output.WriteLine($"resuming from {t.Config.OutDir} after epoch {t.State.Epochs}");
    }

    public virtual void OnStep(int epoch, int batch, int batches, YoloLoss.Result loss, double lr, double msPerStep)
    {
        if (batch == batches - 1 || batch % 10 == 0)
            Output.WriteLine($"epoch {epoch + 1}/{Epochs} batch {batch + 1}/{batches}: box {loss.Box:F3} cls {loss.Cls:F3} dfl {loss.Dfl:F3}, lr {lr:0.00e+00}, {msPerStep:F0} ms/step");
    }

    public virtual void OnEpoch(YoloEpochLog log, string checkpoint, bool best) => Output.WriteLine(Line(log, checkpoint, best));

    protected static string Line(YoloEpochLog log, string checkpoint, bool best) =>
        $"epoch {log.Epoch}: box {log.Box:F3} cls {log.Cls:F3} dfl {log.Dfl:F3}, val mAP50 {log.Map50:F3} mAP50-95 {log.Map50To95:F3} -> {checkpoint}{(best ? " (best so far)" : "")}";
}

/// <summary>A live progress bar over all steps, epochs printed above it.</summary>
public sealed class LiveDetectProgress(ProgressTask task, TextWriter output) : PlainDetectProgress(output)
{
    private int _batches;

    public override void OnStart(YoloTrainer t, int trainImages, int valImages)
    {
        base.OnStart(t, trainImages, valImages);
        _batches = t.Batches;
        task.MaxValue = Math.Max(1, t.Config.Epochs * t.Batches);
        task.Value = t.State.Epochs * t.Batches;
    }

    public override void OnStep(int epoch, int batch, int batches, YoloLoss.Result loss, double lr, double msPerStep)
    {
        task.Value = epoch * _batches + batch + 1;
        task.Description = $"epoch {epoch + 1}/{Epochs} batch {batch + 1}/{batches}  box {loss.Box:F3} cls {loss.Cls:F3} dfl {loss.Dfl:F3}  {msPerStep:F0} ms/step";
    }

    public override void OnEpoch(YoloEpochLog log, string checkpoint, bool best) => AnsiConsole.MarkupLine(Markup.Escape(Line(log, checkpoint, best)));
}
