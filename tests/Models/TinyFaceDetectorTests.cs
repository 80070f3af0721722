using System.Text.Json;
using ManagedTensor.Models.Detection;
using ManagedTensor.Models.Formats;
using ManagedTensor.Tests.Apps;
using ManagedTensor.Tests.Llama;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// face-api's tiny face detector against face-api itself: tests/fixtures/tiny_face_detector holds the library's
/// raw network output and its detections on the four sample images, made by make_fixture.sh (the npm package's
/// bundle under Node on TF.js's CPU backend).
/// </summary>
public class TinyFaceDetectorTests
{
    private static readonly Lazy<TinyFaceDetector> Detector = new(() => TinyFaceDetector.Load(RepoPaths.Of("data", "tiny-face-detector")));
    private static readonly string[] Names = ["astronaut", "chelsea", "coffee", "horse"];
    private static string Fixture(string name) => RepoPaths.Of("tests", "fixtures", "tiny_face_detector", name);
    private static RgbImage Image(string name) => RgbImage.Load(RepoPaths.Of("data", "images", name + ".png"));

    [Fact]
    public void TheRawOutputGridEqualsFaceApisOnEveryImage()
    {
        foreach (string name in Names)
        {
            var bytes = File.ReadAllBytes(Fixture(name + "_grid.bin"));
            var expected = new float[bytes.Length / 4]; // (13, 13, 25) NHWC
            Buffer.BlockCopy(bytes, 0, expected, 0, bytes.Length);
            float[] ours;
            using (GradMode.NoGrad())
                ours = Detector.Value.Forward(Detector.Value.Preprocess(Image(name))).ToArray<float>(); // (25, 13, 13)
            Assert.Equal(expected.Length, ours.Length);
            double worst = 0;
            for (int row = 0; row < 13; row++)
                for (int col = 0; col < 13; col++)
                    for (int ch = 0; ch < 25; ch++)
                        worst = Math.Max(worst, Math.Abs(expected[(row * 13 + col) * 25 + ch] - ours[(ch * 13 + row) * 13 + col]));
            Assert.True(worst < 2e-3, $"{name}: largest difference from face-api's output grid {worst}");
        }
    }

    [Fact]
    public void DetectionsMatchFaceApisWithinHalfAPixelAndScoresWithin0005()
    {
        var root = JsonDocument.Parse(File.ReadAllText(Fixture("expected.json"))).RootElement.GetProperty("images");
        int compared = 0;
        foreach (string name in Names)
        {
            var image = Image(name);
            foreach (double threshold in new[] { 0.5, 0.05 })
            {
                var expected = root.GetProperty(name).GetProperty($"threshold_{threshold}").EnumerateArray().ToList();
                var ours = Detector.Value.Detect(image, threshold);
                Assert.True(expected.Count == ours.Count, $"{name} at {threshold}: face-api found {expected.Count}, we found {ours.Count}");
                for (int i = 0; i < ours.Count; i++)
                {
                    var e = expected[i];
                    Assert.InRange(ours[i].Score - e.GetProperty("score").GetDouble(), -0.005, 0.005);
                    foreach (var (field, value) in new[] { ("x", ours[i].X), ("y", ours[i].Y), ("width", ours[i].Width), ("height", ours[i].Height) })
                        Assert.True(Math.Abs(value - e.GetProperty(field).GetDouble()) <= 0.5, $"{name} box {i} {field}: {value} vs face-api's {e.GetProperty(field).GetDouble()}");
                    compared++;
                }
            }
        }
        Assert.True(compared >= 3, "the fixture should hold some boxes");
    }

    [Fact]
    public void TheAstronautsFaceIsFoundWhereItIsAndNoOtherImageHasAFace()
    {
        // The face in astronaut.png spans about x 170..275, y 80..185 (looked at in the boxed output).
        var faces = Detector.Value.Detect(Image("astronaut"));
        var face = Assert.Single(faces);
        Assert.True(face.Score > 0.9, $"score {face.Score}");
        Assert.InRange(face.X + face.Width / 2, 205, 235);
        Assert.InRange(face.Y + face.Height / 2, 115, 145);
        Assert.InRange(face.Width, 90, 140);
        foreach (string name in new[] { "chelsea", "coffee", "horse" })
            Assert.Empty(Detector.Value.Detect(Image(name), 0.3));
    }

    [Fact]
    public void NmsKeepsTheBestOfOverlappingBoxesPerClass()
    {
        // IoU of (0,0,10,10) and (1,0,10,10): intersection 90, union 110 -> 0.818; (20,..) does not touch them.
        var boxes = new[]
        {
            new Detection(0, 0, 10, 10, 0.8), new Detection(1, 0, 10, 10, 0.9), new Detection(20, 20, 5, 5, 0.3),
            new Detection(0, 0, 10, 10, 0.7, Class: 1),
        };
        Assert.Equal(90.0 / 110, Boxes.Iou(boxes[0], boxes[1]), 12);
        var kept = Boxes.Nms(boxes, 0.5);
        Assert.Equal([0.9, 0.7, 0.3], kept.Select(b => b.Score));
        Assert.Equal([0.9, 0.3], Boxes.Nms(boxes, 0.5, classAware: false).Select(b => b.Score));
        Assert.Equal(4, Boxes.Nms(boxes, 0.9).Count); // 0.818 <= 0.9: nothing suppressed
    }

    [Fact]
    public void GrayscaleAnd16BitPngsAreReadAsRgb()
    {
        string dir = Directory.CreateTempSubdirectory("mt-img").FullName;
        try
        {
            string gray = Path.Combine(dir, "gray.png"), deep = Path.Combine(dir, "deep.png");
            using (var g = new Image<L8>(3, 2, new L8(200))) g.SaveAsPng(gray);
            using (var d = new Image<Rgba64>(2, 2, new Rgba64(65535, 0, 32896, 65535))) d.SaveAsPng(deep);
            var a = RgbImage.Load(gray);
            Assert.Equal((3, 2), (a.Width, a.Height));
            Assert.All(a.Pixels, p => Assert.Equal(200, p));
            var b = RgbImage.Load(deep);
            Assert.Equal((255, 0, 128), (b[1, 1, 0], b[1, 1, 1], b[1, 1, 2]));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void BadFilesGiveOneClearErrorNamingTheFile()
    {
        string dir = Directory.CreateTempSubdirectory("mt-bad").FullName;
        try
        {
            string text = Path.Combine(dir, "notes.png");
            File.WriteAllText(text, "not a picture");
            var e = Assert.Throws<UserErrorException>(() => RgbImage.Load(text));
            Assert.Contains(text, e.Message);

            // A manifest of another network: the first missing weight is named.
            string other = Path.Combine(dir, "other");
            Directory.CreateDirectory(other);
            File.WriteAllBytes(Path.Combine(other, "w.bin"), new byte[16]);
            File.WriteAllText(Path.Combine(other, TinyFaceDetector.ManifestName),
                """[{"paths":["w.bin"],"weights":[{"name":"dense/kernel","shape":[2,2],"dtype":"float32"}]}]""");
            var m = Assert.Throws<InvalidModelFileException>(() => TinyFaceDetector.Load(other));
            Assert.Contains("conv", m.Message);
            Assert.Contains(TinyFaceDetector.ManifestName, m.Message);

            // The real manifest over a truncated shard: the weight that runs past the end is named.
            string cut = Path.Combine(dir, "cut");
            Directory.CreateDirectory(cut);
            string src = RepoPaths.Of("data", "tiny-face-detector");
            File.Copy(Path.Combine(src, TinyFaceDetector.ManifestName), Path.Combine(cut, TinyFaceDetector.ManifestName));
            File.WriteAllBytes(Path.Combine(cut, "tiny_face_detector_model.bin"), File.ReadAllBytes(Path.Combine(src, "tiny_face_detector_model.bin"))[..1000]);
            var t = Assert.Throws<InvalidModelFileException>(() => TinyFaceDetector.Load(cut));
            Assert.Contains("conv1/pointwise_filter", t.Message);

            var r = Mt.Run("detect", "predict", text, "--out", Path.Combine(dir, "out"));
            Assert.Equal(1, r.Code);
            Assert.StartsWith("error: ", r.Err);
            Assert.Contains("notes.png", r.Err);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void DetectPredictWritesABoxedPngAndTheBoxesAsJson()
    {
        string dir = Directory.CreateTempSubdirectory("mt-detect").FullName;
        try
        {
            var r = Mt.Run("detect", "predict", RepoPaths.Of("data", "images", "astronaut.png"), "--out", dir);
            Assert.True(r.Code == 0, r.ToString());
            Assert.Contains("1 face", r.Out);
            var boxes = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "detections.json"))).RootElement;
            var face = boxes[0].GetProperty("detections")[0];
            int x = (int)Math.Round(face.GetProperty("x").GetDouble()), y = (int)Math.Round(face.GetProperty("y").GetDouble());
            var boxed = RgbImage.Load(Path.Combine(dir, "astronaut.png"));
            Assert.Equal((255, 32, 32), (boxed[y + 1, x + 1, 0], boxed[y + 1, x + 1, 1], boxed[y + 1, x + 1, 2])); // the box's corner is drawn
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
