using System.CommandLine;
using System.Text.Json;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Detection;
using ManagedTensor.Models.IO;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt detect predict`: boxes on images. Today the model is face-api's pretrained tiny face detector
/// (data/tiny-face-detector, or a folder or manifest of the same network given by --model).
/// </summary>
public static class DetectCommand
{
    public const string FaceModel = "tiny-face-detector";

    public static Command Create(TextWriter output)
    {
        var cmd = new Command("detect", "object detection");
        cmd.Subcommands.Add(PredictCommand(output));
        cmd.Subcommands.Add(DetectDataCommand.Create(output));
        cmd.Subcommands.Add(DetectTrainCommand.Train(output, Console.Error));
        cmd.Subcommands.Add(DetectTrainCommand.Val(output));
        return cmd;
    }

    private static Command PredictCommand(TextWriter output)
    {
        var images = new Argument<string[]>("IMAGE") { Description = "image files (PNG, JPEG, BMP, GIF, TGA, WebP)", Arity = ArgumentArity.OneOrMore };
        var model = new Option<string>("--model", "-m") { Description = $"{FaceModel} (face-api's pretrained face detector in data/), a folder or weights manifest of that network, or a YOLO run folder or .safetensors of mt detect train", DefaultValueFactory = _ => FaceModel };
        var outDir = new Option<string>("--out", "-o") { Description = "folder for the boxed PNGs (one per image, same name) and detections.json", DefaultValueFactory = _ => "detect-out" };
        var threshold = new Option<double>("--score-threshold") { Description = $"keep boxes scoring above this; when not given: {TinyFaceDetector.DefaultScoreThreshold} for faces, {Models.Detection.Yolo.YoloPostprocess.PredictConfidence} for a YOLO checkpoint" }.Within(0, 1, minExclusive: true, maxExclusive: true);
        var inputSize = new Option<int>("--input-size") { Description = "side of the square the image is resized to (a multiple of 32)", DefaultValueFactory = _ => TinyFaceDetector.DefaultInputSize }.AtLeast(32);
        inputSize.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() % 32 != 0) r.AddError($"--input-size {r.GetValueOrDefault<int>()}: must be a multiple of 32");
        });
        var device = Cli.DeviceOption("cpu");
        var cmd = new Command("predict", "find objects in images; writes boxed PNGs and detections.json") { images, model, outDir, threshold, inputSize, device };
        cmd.SetAction(p =>
        {
            string dir = p.GetValue(outDir)!;
            AtomicFile.EnsureWritableDirectory(dir, "--out");
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            string m = p.GetValue(model)!;
            Models.Detection.Yolo.YoloCheckpoint.Loaded? yolo = IsYolo(m) ? Models.Detection.Yolo.YoloCheckpoint.Load(m, dev) : null;
            yolo?.Model.Fuse();
            var detector = yolo is null ? TinyFaceDetector.Load(DataFiles.Find(m == FaceModel ? Path.Combine("data", FaceModel) : m), dev) : null;
            string Label(Detection d) => yolo is null ? "face" : yolo.Names[d.Class];
            var report = new List<object>();
            var written = new HashSet<string>(StringComparer.Ordinal);
            foreach (string file in p.GetValue(images)!)
            {
                var image = RgbImage.Load(file);
                var found = yolo is not null
                    ? DetectTrainCommand.Predict(yolo, image, p.GetResult(threshold) is null ? Models.Detection.Yolo.YoloPostprocess.PredictConfidence : p.GetValue(threshold), dev)
                    : detector!.Detect(image, p.GetResult(threshold) is null ? TinyFaceDetector.DefaultScoreThreshold : p.GetValue(threshold), p.GetValue(inputSize));
                string png = Path.Combine(dir, Path.GetFileNameWithoutExtension(file) + ".png");
                if (!written.Add(Path.GetFullPath(png))) throw new UserErrorException($"{file}: another image already wrote {png} (two inputs share a name)");
                image.WithBoxes(found, (255, 32, 32)).SavePng(png);
                string noun = yolo is null ? "face" : "object";
                output.WriteLine($"{file}: {found.Count} {noun}{(found.Count == 1 ? "" : "s")} -> {png}");
                foreach (var d in found)
                    output.WriteLine($"  {Label(d)} {d.Score:F3} at x {d.X:F1}, y {d.Y:F1}, {d.Width:F1} x {d.Height:F1}");
                report.Add(new
                {
                    image = file,
                    width = image.Width,
                    height = image.Height,
                    detections = found.Select(d => new { label = Label(d), score = d.Score, x = d.X, y = d.Y, width = d.Width, height = d.Height }),
                });
            }
            string json = Path.Combine(dir, "detections.json");
            AtomicFile.WriteAllText(json, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }) + "\n");
            output.WriteLine($"boxes in {json}");
            return 0;
        });
        return cmd;
    }

    /// <summary>A checkpoint of mt detect train: a .safetensors file, or a folder holding best/last.safetensors.</summary>
    private static bool IsYolo(string model) =>
        model.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)
        || File.Exists(Path.Combine(model, Models.Detection.Yolo.YoloCheckpoint.BestFileName))
        || File.Exists(Path.Combine(model, Models.Detection.Yolo.YoloCheckpoint.LastFileName));
}
