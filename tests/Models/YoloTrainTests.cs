using ManagedTensor.Models.Detection;
using ManagedTensor.Models.Detection.Yolo;
using ManagedTensor.Models.IO;
using ManagedTensor.Tests.Apps;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>`mt detect train`, `val` and `predict` end to end on a tiny procedural set (64 x 64, 3 training images and 1 for val: one step per epoch).</summary>
public class YoloTrainTests
{
    [Fact]
    public void TrainResumesExactlyAndValAndPredictReadTheCheckpoint()
    {
        string root = Directory.CreateTempSubdirectory("mt-yolo").FullName;
        try
        {
            string data = Path.Combine(root, "data");
            Assert.Equal(0, Mt.Run("detect", "make-data", "--out", data, "--images", "4", "--imgsz", "64", "--seed", "1").Code);
            string[] common = ["detect", "train", "--data", data, "--imgsz", "64", "--batch", "3", "--seed", "2"];
            var straight = Mt.Run([.. common, "--out", Path.Combine(root, "a"), "--epochs", "2"]);
            Assert.True(straight.Code == 0, straight.ToString());
            Assert.Contains("epoch 2: box", straight.Out);
            Assert.True(File.Exists(Path.Combine(root, "a", "losses.png")));

            Assert.Equal(0, Mt.Run([.. common, "--out", Path.Combine(root, "b"), "--epochs", "1"]).Code);
            var refused = Mt.Run([.. common, "--out", Path.Combine(root, "b"), "--epochs", "2"]);
            Assert.Contains("--resume", refused.Err);
            var resumed = Mt.Run([.. common, "--out", Path.Combine(root, "b"), "--epochs", "2", "--resume"]);
            Assert.True(resumed.Code == 0, resumed.ToString());
            Assert.Contains("resuming from", resumed.Out);
            var a = SafeTensors.Load(Path.Combine(root, "a", YoloCheckpoint.LastFileName));
            var b = SafeTensors.Load(Path.Combine(root, "b", YoloCheckpoint.LastFileName));
            Assert.Equal(a.Keys.Order(), b.Keys.Order());
            foreach (var (name, t) in a)
                Assert.True(t.ToDoubleArray().SequenceEqual(b[name].ToDoubleArray()), $"{name} differs after --resume");

            var val = Mt.Run("detect", "val", Path.Combine(root, "a"));
            Assert.True(val.Code == 0, val.ToString());
            Assert.Matches(@"all\s+\d+\s+\d\.\d{3}\s+\d\.\d{3}", val.Out);

            string image = Directory.GetFiles(Path.Combine(data, "images", "val"))[0];
            var pred = Mt.Run("detect", "predict", image, "--model", Path.Combine(root, "a", YoloCheckpoint.LastFileName), "--out", Path.Combine(root, "pred"), "--score-threshold", "0.001");
            Assert.True(pred.Code == 0, pred.ToString());
            Assert.Contains("object", pred.Out);
            Assert.True(File.Exists(Path.Combine(root, "pred", "detections.json")));

            // A checkpoint of another kind is named as such.
            string notYolo = Path.Combine(root, "x.safetensors");
            SafeTensors.Save(notYolo, [new("w", Tensor.Zeros([2]))], new Dictionary<string, string> { ["arch"] = "gpt" });
            var wrong = Mt.Run("detect", "val", notYolo);
            Assert.Equal(1, wrong.Code);
            Assert.Contains("not a YOLO checkpoint", wrong.Err);
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void AugmentationIsDeterministicBySeedAndMovesBoxesWithThePixels()
    {
        var (img, boxes) = ShapesDataset.Render(4, 0, 64);
        var aug = new YoloAugment();
        var (a1, b1) = aug.Apply(img, boxes, new Generator(9));
        var (a2, b2) = aug.Apply(img, boxes, new Generator(9));
        Assert.Equal(a1.Pixels, a2.Pixels);
        Assert.Equal(b1, b2);
        // A flip alone mirrors pixels and boxes.
        var flip = new YoloAugment(0, 0, 0, 0, 0, FlipLr: 1);
        var (f, fb) = flip.Apply(img, boxes, new Generator(1));
        Assert.Equal(img[10, 3, 0], f[10, 60, 0]);
        Assert.Equal(64 - boxes[0].Right, fb[0].X, 9);
        // Scale in [0.5, 1.5] about the centre (no translation): a centred square stays a centred square.
        var zoom = new YoloAugment(Scale: 0.5, Translate: 0, 0, 0, 0, 0);
        var centre = new List<Detection> { new(24, 24, 16, 16, 1, 0) };
        for (ulong s = 0; s < 50; s++)
        {
            var (_, zb) = zoom.Apply(img, centre, new Generator(s));
            Assert.Single(zb);
            Assert.Equal(32, zb[0].X + zb[0].Width / 2, 6);    // stays centred
            Assert.Equal(zb[0].Width, zb[0].Height, 6);
        }
    }
}
