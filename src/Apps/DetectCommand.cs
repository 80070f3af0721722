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
        return cmd;
    }

    private static Command PredictCommand(TextWriter output)
    {
        var images = new Argument<string[]>("IMAGE") { Description = "image files (PNG, JPEG, BMP, GIF, TGA, WebP)", Arity = ArgumentArity.OneOrMore };
        var model = new Option<string>("--model", "-m") { Description = $"{FaceModel} (face-api's pretrained face detector in data/), or a folder or weights manifest of that network", DefaultValueFactory = _ => FaceModel };
        var outDir = new Option<string>("--out", "-o") { Description = "folder for the boxed PNGs (one per image, same name) and detections.json", DefaultValueFactory = _ => "detect-out" };
        var threshold = new Option<double>("--score-threshold") { Description = "keep boxes scoring above this", DefaultValueFactory = _ => TinyFaceDetector.DefaultScoreThreshold }.Within(0, 1, minExclusive: true, maxExclusive: true);
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
            var detector = TinyFaceDetector.Load(DataFiles.Find(m == FaceModel ? Path.Combine("data", FaceModel) : m), dev);
            var report = new List<object>();
            var written = new HashSet<string>(StringComparer.Ordinal);
            foreach (string file in p.GetValue(images)!)
            {
                var image = RgbImage.Load(file);
                var found = detector.Detect(image, p.GetValue(threshold), p.GetValue(inputSize));
                string png = Path.Combine(dir, Path.GetFileNameWithoutExtension(file) + ".png");
                if (!written.Add(Path.GetFullPath(png))) throw new UserErrorException($"{file}: another image already wrote {png} (two inputs share a name)");
                image.WithBoxes(found, (255, 32, 32)).SavePng(png);
                output.WriteLine($"{file}: {found.Count} face{(found.Count == 1 ? "" : "s")} -> {png}");
                foreach (var d in found)
                    output.WriteLine($"  face {d.Score:F3} at x {d.X:F1}, y {d.Y:F1}, {d.Width:F1} x {d.Height:F1}");
                report.Add(new
                {
                    image = file,
                    width = image.Width,
                    height = image.Height,
                    detections = found.Select(d => new { label = "face", score = d.Score, x = d.X, y = d.Y, width = d.Width, height = d.Height }),
                });
            }
            string json = Path.Combine(dir, "detections.json");
            AtomicFile.WriteAllText(json, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }) + "\n");
            output.WriteLine($"boxes in {json}");
            return 0;
        });
        return cmd;
    }
}
