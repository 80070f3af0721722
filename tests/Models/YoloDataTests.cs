using ManagedTensor.Models.Detection;
using ManagedTensor.Models.Detection.Yolo;
using ManagedTensor.Tests.Apps;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>The procedural shapes dataset, the Ultralytics layout reader and `mt detect make-data`.</summary>
public class YoloDataTests
{
    [Fact]
    public void ShapesAreDeterministicBySeedAndIndexAndTheirBoxesCoverTheShapes()
    {
        var (a, boxesA) = ShapesDataset.Render(seed: 5, index: 3, size: 64);
        var (b, boxesB) = ShapesDataset.Render(seed: 5, index: 3, size: 64);
        var (c, _) = ShapesDataset.Render(seed: 6, index: 3, size: 64);
        Assert.Equal(a.Pixels, b.Pixels);
        Assert.Equal(boxesA, boxesB);
        Assert.NotEqual(a.Pixels, c.Pixels);
        int classesSeen = 0;
        for (int i = 0; i < 12; i++)
        {
            var (img, boxes) = ShapesDataset.Render(1, i, 64);
            Assert.InRange(boxes.Count, 1, 4);
            foreach (var box in boxes)
            {
                Assert.InRange(box.X, 0, 64);
                Assert.InRange(box.Right, box.X + 4, 64);
                Assert.InRange(box.Bottom, box.Y + 4, 64);
                classesSeen |= 1 << box.Class;
                // the box's centre row holds shape pixels that differ from the background corner's colour
                int y = (int)(box.Y + box.Height / 2);
                Assert.Contains(Enumerable.Range((int)box.X, (int)box.Width), x => Math.Abs(img[y, x, 0] - img[0, 0, 0]) + Math.Abs(img[y, x, 1] - img[0, 0, 1]) + Math.Abs(img[y, x, 2] - img[0, 0, 2]) > 60);
            }
        }
        Assert.Equal(0b1111, classesSeen);
    }

    [Fact]
    public void MakeDataWritesTheUltralyticsLayoutThatTheReaderReadsBack()
    {
        string dir = Directory.CreateTempSubdirectory("mt-shapes").FullName;
        try
        {
            var r = Mt.Run("detect", "make-data", "--out", dir, "--images", "5", "--seed", "3", "--imgsz", "64");
            Assert.True(r.Code == 0, r.ToString());
            var ds = YoloDataset.Open(dir);
            Assert.Equal(ShapesDataset.ClassNames, ds.Names);
            var train = ds.Images("train");
            var val = ds.Images("val");
            Assert.Equal(4, train.Count);
            Assert.Single(val);
            Assert.EndsWith(Path.Combine("images", "val", "00004.png"), val[0]);
            var (img, boxes) = ds.Load(val[0]);
            var (expected, expectedBoxes) = ShapesDataset.Render(3, 4, 64);
            Assert.Equal(expected.Pixels, img.Pixels);
            Assert.Equal(expectedBoxes.Count, boxes.Count);
            for (int i = 0; i < boxes.Count; i++)
            {
                Assert.Equal(expectedBoxes[i].Class, boxes[i].Class);
                Assert.Equal(expectedBoxes[i].X, boxes[i].X, tolerance: 1e-4); // labels hold 6 decimals
                Assert.Equal(expectedBoxes[i].Height, boxes[i].Height, tolerance: 1e-4);
            }

            var again = Mt.Run("detect", "make-data", "--out", dir, "--images", "3");
            Assert.Equal(1, again.Code);
            Assert.Contains("--force", again.Err);
            Assert.Equal(0, Mt.Run("detect", "make-data", "--out", dir, "--images", "3", "--imgsz", "32", "--force").Code);
            Assert.Equal(2, YoloDataset.Open(dir).Images("train").Count); // the old 4 are gone
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData("train: images/train\nval: images/val\nnames: [cat, 'dog']\n", "cat,dog")]
    [InlineData("path: .  # root\ntrain: images/train\nnames:\n  - cat\n  - dog\n  - bird\n", "cat,dog,bird")]
    [InlineData("train: images/train\nnc: 2\nnames:\n  0: cat\n  1: dog\ndownload: |\n  some script\n", "cat,dog")]
    public void DataYamlNamesInEveryUltralyticsForm(string yaml, string names)
    {
        string dir = Directory.CreateTempSubdirectory("mt-yaml").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "data.yaml"), yaml);
            Assert.Equal(names.Split(','), YoloDataset.Open(dir).Names);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void BadDatasetsAreNamedByFileAndLine()
    {
        string dir = Directory.CreateTempSubdirectory("mt-yaml").FullName;
        try
        {
            string yaml = Path.Combine(dir, "data.yaml");
            Assert.Contains("no such file", Assert.Throws<UserErrorException>(() => YoloDataset.Open(dir)).Message);
            File.WriteAllText(yaml, "train: images/train\nnames:\n  0: cat\n  2: dog\n");
            Assert.Contains(yaml + ":4: expected `1: name`", Assert.Throws<UserErrorException>(() => YoloDataset.Open(dir)).Message);
            File.WriteAllText(yaml, "train: images/train\nnc: 3\nnames: [cat, dog]\n");
            Assert.Contains("nc: 3 does not match the 2 class names", Assert.Throws<UserErrorException>(() => YoloDataset.Open(dir)).Message);
            File.WriteAllText(yaml, "train: images/train\nval: images/val\nnames: [cat]\n");
            Assert.Contains("is not a folder", Assert.Throws<UserErrorException>(() => YoloDataset.Open(dir).Images("train")).Message);

            Directory.CreateDirectory(Path.Combine(dir, "images", "train"));
            Directory.CreateDirectory(Path.Combine(dir, "labels", "train"));
            new RgbImage(8, 8, new byte[8 * 8 * 3]).SavePng(Path.Combine(dir, "images", "train", "a.png"));
            string label = Path.Combine(dir, "labels", "train", "a.txt");
            File.WriteAllText(label, "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n");
            var ds = YoloDataset.Open(dir);
            Assert.Contains(label + ":2: class id 1 is out of range", Assert.Throws<UserErrorException>(() => ds.Load(ds.Images("train")[0])).Message);
            File.WriteAllText(label, "");
            Assert.Empty(ds.Load(ds.Images("train")[0]).Boxes); // an image without objects
            File.WriteAllText(Path.Combine(dir, "images", "train", "b.png"), "not a png");
            Assert.Contains("b.png: not an image", Assert.Throws<UserErrorException>(() => ds.Load(ds.Images("train")[1])).Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
