using System.CommandLine;
using ManagedTensor.Models.Detection.Yolo;
using ManagedTensor.Models.IO;

namespace ManagedTensor.Apps;

/// <summary>`mt detect make-data`: writes the procedural shapes dataset (ShapesDataset) in the Ultralytics layout.</summary>
public static class DetectDataCommand
{
    public static Command Create(TextWriter output)
    {
        var outDir = new Option<string>("--out", "-o") { Description = "folder to write data.yaml, images/ and labels/ into", DefaultValueFactory = _ => "shapes-data" };
        var images = new Option<int>("--images") { Description = "number of images (a fifth, at least one, go to the val split)", DefaultValueFactory = _ => 1000 }.AtLeast(2);
        var seed = new Option<int>("--seed", "-s") { Description = "random seed: the same seed writes the same files", DefaultValueFactory = _ => 0 };
        var size = new Option<int>("--imgsz") { Description = "image side in pixels", DefaultValueFactory = _ => 128 }.AtLeast(32);
        var force = new Option<bool>("--force") { Description = "replace a dataset already in --out (its images/ and labels/ are deleted first)" };
        var cmd = new Command("make-data", "write a procedural detection dataset (circles, squares, triangles, stars on textured backgrounds) in the Ultralytics YOLO layout")
        {
            outDir, images, seed, size, force,
        };
        cmd.SetAction(p =>
        {
            string dir = p.GetValue(outDir)!;
            if (File.Exists(Path.Combine(dir, YoloDataset.YamlName)))
            {
                if (!p.GetValue(force)) throw new UserErrorException($"--out {dir}: already holds a dataset ({YoloDataset.YamlName}); add --force to replace it");
                foreach (string sub in new[] { "images", "labels" })
                    if (Directory.Exists(Path.Combine(dir, sub))) Directory.Delete(Path.Combine(dir, sub), recursive: true);
            }
            AtomicFile.EnsureWritableDirectory(dir, "--out");
            var (train, val) = ShapesDataset.Write(dir, new ShapesDataset.Options(p.GetValue(images), p.GetValue(seed), p.GetValue(size)));
            output.WriteLine($"wrote {train} training and {val} validation images ({p.GetValue(size)} x {p.GetValue(size)}, classes {string.Join(", ", ShapesDataset.ClassNames)}) to {dir}");
            output.WriteLine($"  {Path.Combine(dir, YoloDataset.YamlName)}");
            return 0;
        });
        return cmd;
    }
}
