using System.CommandLine;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Vision;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt classify train` trains the small Fashion-MNIST CNN (<see cref="FashionClassifier"/>) and reports its test
/// accuracy; `mt classify predict IMAGE...` names what is in images. The classifier is also the judge of the
/// diffusion models (`mt diffuse eval`).
/// </summary>
public static class ClassifyCommand
{
    public const string DefaultOutDir = "out-classifier";

    public static Command Create(TextWriter output)
    {
        var cmd = new Command("classify", "a CNN classifier for Fashion-MNIST: train it, or name the clothing in images");
        cmd.Subcommands.Add(TrainCommand(output));
        cmd.Subcommands.Add(PredictCommand(output));
        return cmd;
    }

    public static Option<string?> DataOption() => new("--data")
    {
        Description = $"folder with Fashion-MNIST's four IDX files (train-images-idx3-ubyte.gz, ...); default: the first of {string.Join(", ", FashionMnist.DefaultFolders)}",
    };

    private static Command TrainCommand(TextWriter output)
    {
        var d = new ClassifierTrainConfig();
        var data = DataOption();
        var outDir = new Option<string>("--out-dir") { Description = "folder for classifier.safetensors and loss.png", DefaultValueFactory = _ => DefaultOutDir };
        var epochs = new Option<int>("--epochs") { Description = "passes over the training images", DefaultValueFactory = _ => d.Epochs }.AtLeast(1);
        var batch = new Option<int>("--batch-size") { Description = "images per step", DefaultValueFactory = _ => d.BatchSize }.AtLeast(2);
        var lr = new Option<double>("--lr") { Description = "peak AdamW learning rate (cosine decay)", DefaultValueFactory = _ => d.LearningRate }.Within(0, minExclusive: true);
        var width = new Option<int>("--width") { Description = "channels of the first conv (the second has twice as many)", DefaultValueFactory = _ => d.Width }.AtLeast(1);
        var limit = new Option<int>("--limit") { Description = "use only the first N images of each split (0: all)", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var seed = new Option<ulong>("--seed") { Description = "seed of the weights and the shuffles", DefaultValueFactory = _ => d.Seed };
        var device = Cli.DeviceOption("cpu");
        var cmd = new Command("train", "train the classifier on Fashion-MNIST; prints the test accuracy after each epoch") { data, outDir, epochs, batch, lr, width, limit, seed, device };
        cmd.SetAction(p =>
        {
            var cfg = d with
            {
                OutDir = p.GetValue(outDir)!, Epochs = p.GetValue(epochs), BatchSize = p.GetValue(batch), LearningRate = p.GetValue(lr),
                Width = p.GetValue(width), Limit = p.GetValue(limit), Seed = p.GetValue(seed),
            };
            cfg.Validate();
            AtomicFile.EnsureWritableDirectory(cfg.OutDir, "--out-dir");
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            string dir = FashionMnist.FindFolder(p.GetValue(data));
            var train = FashionMnist.Load(dir, "train", cfg.Limit);
            var test = FashionMnist.Load(dir, "t10k", cfg.Limit);
            var trainer = new ClassifierTrainer(cfg, train, test, dev);
            output.WriteLine($"data: {dir}, {train.Count:N0} train / {test.Count:N0} test images");
            output.WriteLine($"model: CNN {cfg.Width}/{2 * cfg.Width} channels, hidden {cfg.Hidden}: {trainer.Model.ParameterCount():N0} parameters on {dev}");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            PlainImageProgress.Run(output, o => trainer.Run(o));
            string png = Path.Combine(cfg.OutDir, "loss.png");
            LossPlot.Save(trainer.History, png, $"Fashion-MNIST CNN (points: test error)", "cross-entropy loss / test error");
            output.WriteLine($"test accuracy {trainer.TestAccuracy:P2} after {cfg.Epochs} epoch{(cfg.Epochs == 1 ? "" : "s")} in {clock.Elapsed:hh\\:mm\\:ss}; loss curve: {png}");
            return 0;
        });
        return cmd;
    }

    private static Command PredictCommand(TextWriter output)
    {
        var images = new Argument<string[]>("IMAGE") { Description = "image files (PNG, JPEG, BMP, ...), resized to 28x28 grayscale", Arity = ArgumentArity.OneOrMore };
        var model = new Option<string>("--model", "-m") { Description = "classifier.safetensors, or the --out-dir of mt classify train", DefaultValueFactory = _ => DefaultOutDir };
        var invert = new Option<bool>("--invert") { Description = "invert the gray levels first (Fashion-MNIST is light clothing on black; use for dark objects on white)" };
        var cmd = new Command("predict", "name the clothing in images with a trained classifier") { images, model, invert };
        cmd.SetAction(p =>
        {
            var clf = FashionClassifier.Load(p.GetValue(model)!, Device.Cpu);
            foreach (string file in p.GetValue(images)!)
            {
                var x = GrayImage.Load(file, clf.Config.Side, Device.Cpu, p.GetValue(invert));
                Tensor probs;
                using (GradMode.NoGrad()) probs = clf.Forward(x).Softmax(-1);
                var pr = probs.ToDoubleArray();
                int best = Array.IndexOf(pr, pr.Max());
                output.WriteLine($"{file}: {best} {FashionMnist.ClassNames[best]} ({pr[best]:P1})");
            }
            return 0;
        });
        return cmd;
    }
}
