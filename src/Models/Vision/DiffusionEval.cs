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

    public static Result Run(Denoiser net, FashionClassifier clf, FashionMnist real, int count, SamplerOptions opts, Action<int, int>? progress = null)
    {
        var clock = Stopwatch.StartNew();
        int classes = net.Config.Classes, pad = (net.Config.ImageSize - clf.Config.Side) / 2, right = 0, d = clf.Config.Hidden;
        var feats = new double[count * d];
        for (int s = 0; s < count; s += 100)
        {
            int b = Math.Min(100, count - s);
            var labels = Enumerable.Range(s, b).Select(i => i % classes).ToArray();
            var images = Sampler.Sample(net, labels, opts with { Seed = opts.Seed + (ulong)s });
            var crop = images.Narrow(2, pad, clf.Config.Side).Narrow(3, pad, clf.Config.Side).Contiguous();
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
