using ManagedTensor.Models.Detection;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>COCO's mAP on cases small enough to compute by hand.</summary>
public class MeanAveragePrecisionTests
{
    private static Detection Box(double x, double y, double w, double h, double score = 1, int cls = 0) => new(x, y, w, h, score, cls);

    [Fact]
    public void AHandComputedCaseGivesCocosNumbers()
    {
        // Class 0, one image, two ground-truth boxes. Detections by score:
        //   0.9 on truth A exactly (IoU 1), 0.8 far from both, 0.7 on truth B with IoU 72/100 = 0.72.
        // At t <= 0.70 (5 thresholds): TP, FP, TP -> recall .5 .5 1, precision 1 .5 .667, envelope 1 .667 .667;
        //   recall levels 0..0.50 (51 of them) read precision 1, levels 0.51..1 (50) read 2/3:
        //   AP = (51 + 50 * 2/3) / 101 = 0.834983...
        // At t >= 0.75 (5 thresholds): TP, FP, FP -> recall reaches only .5: AP = 51 / 101 = 0.504950...
        // Class 1: one truth found exactly -> AP 1 at every threshold. Class 2 has no truth: left out.
        var truths = new[] { new[] { Box(0, 0, 10, 10), Box(20, 0, 10, 10), Box(50, 50, 4, 4, cls: 1) } };
        var predictions = new[]
        {
            new[] { Box(0, 0, 10, 10, 0.9), Box(100, 100, 5, 5, 0.8), Box(20, 0, 10, 7.2, 0.7), Box(50, 50, 4, 4, 0.6, 1), Box(0, 0, 3, 3, 0.5, 2) },
        };
        var r = MeanAveragePrecision.Evaluate(predictions, truths, classes: 3);
        double ap50 = (51 + 50 * 2.0 / 3) / 101, apHigh = 51.0 / 101;
        Assert.Equal(2, r.PerClass.Count);
        Assert.Equal(ap50, r.PerClass[0].Ap50, 12);
        Assert.Equal((5 * ap50 + 5 * apHigh) / 10, r.PerClass[0].Ap50To95, 12);
        Assert.Equal(1.0, r.PerClass[1].Ap50, 12);
        Assert.Equal((ap50 + 1) / 2, r.Map50, 12);
        Assert.Equal(((5 * ap50 + 5 * apHigh) / 10 + 1) / 2, r.Map50To95, 12);
    }

    [Fact]
    public void DetectionsAreRankedAcrossImagesAndATruthIsMatchedOnce()
    {
        // Two images. Image 0: one truth, two detections on it (0.95 matches, 0.6 is a duplicate: FP).
        // Image 1: one truth, found at 0.8. Ranked: TP .95, TP .8, FP .6 -> recall .5 1 1, precision 1 1 .667:
        // every recall level reads 1, AP = 1.
        var truths = new[] { new[] { Box(0, 0, 10, 10) }, new[] { Box(5, 5, 10, 10) } };
        var predictions = new[] { new[] { Box(0, 0, 10, 10, 0.95), Box(0, 0, 10, 10, 0.6) }, new[] { Box(5, 5, 10, 10, 0.8) } };
        Assert.Equal(1.0, MeanAveragePrecision.Evaluate(predictions, truths, 1).Map50To95, 12);
        // The duplicate ranked above the second truth: TP, FP, TP -> as in the first case at t = 0.5.
        predictions[0][1] = predictions[0][1] with { Score = 0.9 };
        Assert.Equal((51 + 50 * 2.0 / 3) / 101, MeanAveragePrecision.Evaluate(predictions, truths, 1).Map50, 12);
    }

    [Fact]
    public void NoDetectionsGiveZeroAndAnEmptyImageIsValid()
    {
        var truths = new[] { new[] { Box(0, 0, 10, 10) }, Array.Empty<Detection>() };
        var none = new[] { Array.Empty<Detection>(), Array.Empty<Detection>() };
        Assert.Equal(0, MeanAveragePrecision.Evaluate(none, truths, 1).Map50);
        Assert.Throws<ArgumentException>(() => MeanAveragePrecision.Evaluate(none[..1], truths, 1));
    }
}
