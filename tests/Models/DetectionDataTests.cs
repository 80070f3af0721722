using ManagedTensor.Models.Detection;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>The letterbox and the YOLO label format.</summary>
public class DetectionDataTests
{
    [Fact]
    public void LetterboxCentresTheScaledImageOnGrayAndMapsBoxesBack()
    {
        // 40 x 20 into 32: r = 0.8, content 32 x 16, padding 8 above and 8 below.
        var px = new byte[40 * 20 * 3];
        Array.Fill(px, (byte)200);
        var (boxed, map) = Letterbox.Apply(new RgbImage(40, 20, px), 32);
        Assert.Equal((0.8, 0, 8), (map.Scale, map.PadLeft, map.PadTop));
        Assert.Equal(Letterbox.PadValue, boxed[7, 5, 0]);
        Assert.Equal(200, boxed[8, 0, 1]);
        Assert.Equal(200, boxed[23, 31, 2]);
        Assert.Equal(Letterbox.PadValue, boxed[24, 31, 2]);
        var box = new Detection(10, 5, 20, 10, 0.9, 2);
        var back = map.ToImage(map.ToInput(box));
        Assert.Equal(box.X, back.X, 9);
        Assert.Equal(box.Height, back.Height, 9);
        Assert.Equal((0.9, 2), (back.Score, back.Class));
        Assert.Equal(0, map.ToImage(new Detection(-5, 0, 10, 10, 1)).X); // clipped to the image

        // An odd padding splits as Ultralytics': 40 x 21 into 32 -> r = 0.8, content 32 x 17, padding 15:
        // round(7.5 - 0.1) = 7 above, round(7.5 + 0.1) = 8 below.
        var (oddImage, odd) = Letterbox.Apply(new RgbImage(40, 21, Enumerable.Repeat((byte)200, 40 * 21 * 3).ToArray()), 32);
        Assert.Equal(7, odd.PadTop);
        Assert.Equal(200, oddImage[23, 0, 0]);
        Assert.Equal(Letterbox.PadValue, oddImage[24, 0, 0]);
    }

    [Fact]
    public void LabelsRoundTripAndAnEmptyFileIsAnImageWithoutObjects()
    {
        string dir = Directory.CreateTempSubdirectory("mt-labels").FullName;
        try
        {
            string path = Path.Combine(dir, "a.txt");
            var boxes = new[] { new Detection(10, 20, 30, 40, 1, 1), new Detection(0, 0, 100, 50, 1, 0) };
            File.WriteAllText(path, YoloLabels.Format(boxes, 100, 50) + "\n");
            var read = YoloLabels.Read(path, classes: 2, 100, 50);
            Assert.Equal(2, read.Count);
            Assert.Equal((10.0, 20.0, 30.0, 40.0, 1), (Math.Round(read[0].X, 4), Math.Round(read[0].Y, 4), Math.Round(read[0].Width, 4), Math.Round(read[0].Height, 4), read[0].Class));
            File.WriteAllText(path, "");
            Assert.Empty(YoloLabels.Read(path, 2, 100, 50));
            Assert.Empty(YoloLabels.Read(Path.Combine(dir, "none.txt"), 2, 100, 50));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2", ":2: class id 3 is out of range")]
    [InlineData("0 0.5 1.5 0.2 0.2", ":1: cy 1.5 is outside [0, 1]")]
    [InlineData("\n0 0.5 0.5 0.2", ":2: expected 'class cx cy w h' (5 fields), got 4")]
    [InlineData("dog 0.5 0.5 0.2 0.2", ":1: class id 'dog' is not an integer")]
    [InlineData("0 0.5 0.5 NaN 0.2", ":1: w 'NaN' is not a number")]
    [InlineData("-1 0.5 0.5 0.2 0.2", ":1: class id -1 is out of range")]
    public void ABadLabelLineIsNamedByFileAndLine(string text, string expected)
    {
        string path = Path.Combine(Directory.CreateTempSubdirectory("mt-labels").FullName, "img.txt");
        try
        {
            File.WriteAllText(path, text);
            var e = Assert.Throws<UserErrorException>(() => YoloLabels.Read(path, classes: 3, 64, 64));
            Assert.Contains(path + expected, e.Message);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, true);
        }
    }
}
