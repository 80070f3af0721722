using System.Diagnostics;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Diffusion;

namespace ManagedTensor.Models.Vision;

/// <summary>
/// How good a class-conditional generator is, judged by the project's Fashion-MNIST classifier:
/// class consistency (the fraction of samples drawn for class k that the classifier calls k) and the Fréchet
/// distance between the classifier's penultimate features of the samples and of real test images
/// (<see cref="FeatureFid"/>; not Inception FID). Samples are drawn for classes 0, 1, ..., 9, 0, ... in batches of
/// 100, cropped from the model's padded size back to 28x28.
/// </summary>
public static class DiffusionEval
{
    public sealed record Result(double ClassConsistency, double Fid, double Seconds);

    /// <summary>
    /// Samples for <paramref name="classes"/> in turn (default: every class) judged against <paramref name="real"/>
    /// (give it the same classes' test images when judging a subset, such as a class learned by LoRA).
    /// </summary>
    public static Result Run(Denoiser net, FashionClassifier clf, FashionMnist real, int count, SamplerOptions opts, Action<int, int>? progress = null, int[]? classes = null) =>
        Judge(clf, real, count, classes ?? Enumerable.Range(0, net.Config.Classes).ToArray(), (labels, s) => Sampler.Sample(net, labels, opts with { Seed = opts.Seed + (ulong)s }), progress);

    /// <summary>
    /// The judge's own check (`mt diffuse eval --real`): real training images in place of samples, through the same
    /// path (pixels in [-1, 1], padded to the model's size as in training, cropped back, classified). Class
    /// consistency is then the classifier's accuracy on them (~90 %) and the FID near the floor; if not, the judge is
    /// at fault, not the generator.
    /// </summary>
    public static Result RunOnRealImages(DiffusionConfig model, FashionClassifier clf, FashionMnist train, FashionMnist real, int count, Action<int, int>? progress = null)
    {
        int pad = (model.ImageSize - FashionMnist.Side) / 2, next = 0;
        return Judge(clf, real, count, Enumerable.Range(0, model.Classes).ToArray(), (labels, _) =>
        {
            var idx = labels.Select(k => next = NextOfClass(train, k, next)).ToArray();
            return train.Batch(idx, Device.Cpu, -1, 1, pad);
        }, progress);
    }

    private static int NextOfClass(FashionMnist data, int label, int from)
    {
        for (int i = 0; i < data.Count; i++)
        {
            int j = (from + 1 + i) % data.Count;
            if (data.Labels[j] == label) return j;
        }
        throw new UserErrorException($"{data.Source}: no image of class {label}");
    }

    /// <summary>
    /// Draws <paramref name="count"/> images for <paramref name="classes"/> in turn (0, 1, ..., 9, 0, ...) in batches of 100 from
    /// <paramref name="draw"/> (labels, first index) -> (B, 1, S, S) in [-1, 1], crops them to the classifier's 28x28,
    /// and scores them.
    /// </summary>
    private static Result Judge(FashionClassifier clf, FashionMnist real, int count, int[] classes, Func<int[], int, Tensor> draw, Action<int, int>? progress)
    {
        var clock = Stopwatch.StartNew();
        int right = 0, d = clf.Config.Hidden, side = clf.Config.Side;
        var feats = new double[count * d];
        for (int s = 0; s < count; s += 100)
        {
            int b = Math.Min(100, count - s);
            var labels = Enumerable.Range(s, b).Select(i => classes[i % classes.Length]).ToArray();
            var images = draw(labels, s);
            int pad = (images.Shape[2] - side) / 2;
            var crop = images.Narrow(2, pad, side).Narrow(3, pad, side).Contiguous();
            using (GradMode.NoGrad())
            {
                clf.Features(crop).ToDoubleArray().CopyTo(feats, s * d);
                var pred = clf.Predict(crop);
                for (int i = 0; i < b; i++) if (pred[i] == labels[i]) right++;
            }
            progress?.Invoke(s + b, count);
        }
        double fid = FeatureFid.Distance(FeatureFid.Fit(feats, count, d), FeatureFid.Fit(Features(clf, real), real.Count, d));
        return new Result((double)right / count, fid, clock.Elapsed.TotalSeconds);
    }

    /// <summary>The classifier's features of every image of <paramref name="data"/> (N * hidden, row-major).</summary>
    public static double[] Features(FashionClassifier clf, FashionMnist data)
    {
        int d = clf.Config.Hidden;
        var f = new double[data.Count * d];
        using var noGrad = GradMode.NoGrad();
        for (int s = 0; s < data.Count; s += 500)
        {
            var idx = Enumerable.Range(s, Math.Min(500, data.Count - s)).ToArray();
            clf.Features(data.Batch(idx, Device.Cpu, -1, 1)).ToDoubleArray().CopyTo(f, s * d);
        }
        return f;
    }

    /// <summary>The FID between two sets of real images (the floor: test against training images).</summary>
    public static double Fid(FashionClassifier clf, FashionMnist a, FashionMnist b) =>
        FeatureFid.Distance(FeatureFid.Fit(Features(clf, a), a.Count, clf.Config.Hidden), FeatureFid.Fit(Features(clf, b), b.Count, clf.Config.Hidden));
}
