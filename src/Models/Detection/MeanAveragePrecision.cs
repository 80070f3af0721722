namespace ManagedTensor.Models.Detection;

/// <summary>
/// Mean average precision as COCO computes it (pycocotools' COCOeval for boxes, no crowd regions):
/// for each class and IoU threshold t in 0.50, 0.55, ..., 0.95:
///   1. in each image, the class's detections (at most <see cref="MaxDetections"/>, best first) are matched
///      greedily: each takes the still unmatched ground-truth box it overlaps most with IoU >= t (a true
///      positive), or none (a false positive);
///   2. all images' detections are ranked by score; after the k-th, recall = TP / (ground-truth boxes) and
///      precision = TP / k; precision is replaced by its running maximum from the right (the envelope);
///   3. AP = the mean, over the 101 recall levels 0, 0.01, ..., 1, of the envelope's precision at the first
///      rank reaching that recall (0 where no rank does).
/// mAP@0.5 is the mean over classes of AP at t = 0.5; mAP@0.5:0.95 the mean over classes and the ten
/// thresholds. Classes without ground truth in the set are left out of the means (as COCO's -1).
/// </summary>
public static class MeanAveragePrecision
{
    public const int MaxDetections = 100;

    /// <summary>0.50, 0.55, ..., 0.95, as np.linspace(.5, .95, 10).</summary>
    public static readonly double[] IouThresholds = Enumerable.Range(0, 10).Select(i => 0.5 + 0.05 * i).ToArray();

    /// <summary>AP of one class: at IoU 0.5, and averaged over the ten thresholds.</summary>
    public readonly record struct ClassAp(int Class, int Truths, double Ap50, double Ap50To95);

    public sealed record Result(double Map50, double Map50To95, IReadOnlyList<ClassAp> PerClass);

    /// <summary>
    /// Evaluates <paramref name="predictions"/>[i] against <paramref name="truths"/>[i] (image i; truth scores
    /// are ignored) for classes 0..<paramref name="classes"/>-1.
    /// </summary>
    public static Result Evaluate(IReadOnlyList<IReadOnlyList<Detection>> predictions, IReadOnlyList<IReadOnlyList<Detection>> truths, int classes)
    {
        if (predictions.Count != truths.Count)
            throw new ArgumentException($"mAP: {predictions.Count} images of predictions but {truths.Count} of ground truth");
        var perClass = new List<ClassAp>();
        for (int c = 0; c < classes; c++)
        {
            int nTruth = truths.Sum(t => t.Count(b => b.Class == c));
            if (nTruth == 0) continue;
            var aps = IouThresholds.Select(t => AveragePrecision(Ranked(predictions, truths, c, t), nTruth)).ToArray();
            perClass.Add(new ClassAp(c, nTruth, aps[0], aps.Average()));
        }
        return perClass.Count == 0
            ? new Result(0, 0, perClass)
            : new Result(perClass.Average(a => a.Ap50), perClass.Average(a => a.Ap50To95), perClass);
    }

    /// <summary>Every detection of class <paramref name="c"/> with whether it matched, ranked by score over all images.</summary>
    private static List<(double Score, bool Tp)> Ranked(IReadOnlyList<IReadOnlyList<Detection>> predictions, IReadOnlyList<IReadOnlyList<Detection>> truths, int c, double iouThreshold)
    {
        var all = new List<(double Score, bool Tp)>();
        for (int i = 0; i < predictions.Count; i++)
        {
            var gts = truths[i].Where(b => b.Class == c).ToList();
            var matched = new bool[gts.Count];
            var dets = predictions[i].Where(d => d.Class == c).OrderByDescending(d => d.Score).Take(MaxDetections);
            foreach (var d in dets)
            {
                int best = -1;
                double bestIou = Math.Min(iouThreshold, 1 - 1e-10); // COCOeval: a match needs IoU >= t
                for (int g = 0; g < gts.Count; g++)
                {
                    if (matched[g]) continue;
                    double iou = Boxes.Iou(d, gts[g]);
                    if (iou < bestIou) continue;
                    (bestIou, best) = (iou, g);
                }
                if (best >= 0) matched[best] = true;
                all.Add((d.Score, best >= 0));
            }
        }
        // Stable: equal scores keep image order, as COCOeval's mergesort.
        return all.Select((x, k) => (x, k)).OrderByDescending(p => p.x.Score).ThenBy(p => p.k).Select(p => p.x).ToList();
    }

    /// <summary>COCO's 101-point interpolated AP of a ranked list of detections against <paramref name="truths"/> boxes.</summary>
    public static double AveragePrecision(IReadOnlyList<(double Score, bool Tp)> ranked, int truths)
    {
        if (truths <= 0) throw new ArgumentException("average precision needs at least one ground-truth box");
        int n = ranked.Count;
        var recall = new double[n];
        var precision = new double[n];
        int tp = 0;
        for (int k = 0; k < n; k++)
        {
            if (ranked[k].Tp) tp++;
            recall[k] = (double)tp / truths;
            precision[k] = (double)tp / (k + 1);
        }
        for (int k = n - 2; k >= 0; k--) precision[k] = Math.Max(precision[k], precision[k + 1]); // envelope
        double sum = 0;
        for (int r = 0; r <= 100; r++)
        {
            double level = r * 0.01; // np.linspace(0, 1, 101): i * step, step = 0.01
            int first = Array.FindIndex(recall, v => v >= level); // np.searchsorted(recall, level, side='left')
            if (first >= 0) sum += precision[first];
        }
        return sum / 101;
    }
}
