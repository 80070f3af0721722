namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>A ground-truth box: its class and corners (x0, y0, x1, y1), in input pixels.</summary>
public readonly record struct GtBox(int Class, double X0, double Y0, double X1, double Y1);

/// <summary>
/// The task-aligned assigner of TOOD, as Ultralytics' TaskAlignedAssigner (topk 10, alpha 0.5, beta 6): which cells
/// learn which object, and how confident they should be. No gradient flows through it (Ultralytics runs it on
/// detached predictions); it runs per image on the host in double precision. For an image with G boxes and A cells:
///   1. candidates: cell a is a candidate of box g when its centre lies strictly inside g (min distance > 1e-9);
///   2. alignment t[g, a] = s^alpha * u^beta for candidates (0 elsewhere), s = the predicted probability of g's
///      class at a, u = max(CIoU(g, predicted box at a), 0);
///   3. each box keeps its top-k cells by t (first index on ties); positives = top-k and candidate;
///   4. a cell positive for several boxes keeps only the box with the largest u over all boxes (first on ties);
///   5. targets: a positive cell takes its box and the one-hot of its class scaled by
///      max over boxes of t[g, a] * max_a' u[g, a'] / (max_a' t[g, a'] + 1e-9) (both maxima over g's positives);
///      a negative cell has score 0 (its box, box 0's, is never used).
/// </summary>
public static class TaskAlignedAssigner
{
    public const int TopK = 10;
    public const double Alpha = 0.5, Beta = 6.0, Eps = 1e-9;

    /// <param name="TargetBoxes">(A, 4) x0, y0, x1, y1 in pixels.</param>
    /// <param name="TargetScores">(A, nc).</param>
    /// <param name="Foreground">(A).</param>
    /// <param name="TargetGt">(A): the box each cell is assigned (0 for a negative cell).</param>
    public sealed record Result(double[] TargetBoxes, double[] TargetScores, bool[] Foreground, int[] TargetGt);

    /// <param name="scores">(A, nc) predicted class probabilities (after the sigmoid).</param>
    /// <param name="boxes">(A, 4) predicted x0, y0, x1, y1 in pixels.</param>
    /// <param name="anchors">(A, 2) cell centres in pixels.</param>
    public static Result Assign(ReadOnlySpan<double> scores, ReadOnlySpan<double> boxes, ReadOnlySpan<double> anchors, IReadOnlyList<GtBox> gts, int classes)
    {
        int a = anchors.Length / 2, g = gts.Count;
        if (scores.Length != a * classes || boxes.Length != a * 4)
            throw new ArgumentException($"assigner: {a} anchors but scores of {scores.Length} values ({classes} classes) and boxes of {boxes.Length}");
        var result = new Result(new double[a * 4], new double[a * classes], new bool[a], new int[a]);
        if (g == 0) return result;

        // 1-2. candidates, overlaps u and alignment t, (G, A) row-major
        var overlap = new double[g * a];
        var align = new double[g * a];
        var candidate = new bool[g * a];
        for (int j = 0; j < g; j++)
        {
            var b = gts[j];
            for (int i = 0; i < a; i++)
            {
                double x = anchors[2 * i], y = anchors[2 * i + 1];
                double d = Math.Min(Math.Min(x - b.X0, y - b.Y0), Math.Min(b.X1 - x, b.Y1 - y));
                if (!(d > Eps)) continue;
                candidate[j * a + i] = true;
                double u = Math.Max(Ciou.Value(b.X0, b.Y0, b.X1, b.Y1, boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3]), 0);
                overlap[j * a + i] = u;
                align[j * a + i] = Math.Pow(scores[i * classes + b.Class], Alpha) * Math.Pow(u, Beta);
            }
        }

        // 3. top-k by alignment per box (over every cell, as torch.topk), kept where a candidate
        var positive = new bool[g * a];
        var order = new int[a];
        for (int j = 0; j < g; j++)
        {
            for (int i = 0; i < a; i++) order[i] = i;
            var row = align.AsSpan(j * a, a).ToArray();
            Array.Sort(order, (p, q) => row[q].CompareTo(row[p]) is var c && c != 0 ? c : p.CompareTo(q));
            for (int k = 0; k < Math.Min(TopK, a); k++)
                if (candidate[j * a + order[k]]) positive[j * a + order[k]] = true;
        }

        // 4. a cell claimed by several boxes goes to the box it overlaps most (argmax over all boxes)
        for (int i = 0; i < a; i++)
        {
            int claims = 0;
            for (int j = 0; j < g; j++) if (positive[j * a + i]) claims++;
            if (claims <= 1) continue;
            int best = 0;
            for (int j = 1; j < g; j++) if (overlap[j * a + i] > overlap[best * a + i]) best = j;
            for (int j = 0; j < g; j++) positive[j * a + i] = j == best;
        }

        // 5. targets, with scores normalized per box by its best alignment and best overlap
        var maxAlign = new double[g];
        var maxOverlap = new double[g];
        for (int j = 0; j < g; j++)
            for (int i = 0; i < a; i++)
                if (positive[j * a + i])
                {
                    maxAlign[j] = Math.Max(maxAlign[j], align[j * a + i]);
                    maxOverlap[j] = Math.Max(maxOverlap[j], overlap[j * a + i]);
                }
        for (int i = 0; i < a; i++)
        {
            int gt = 0;
            double norm = 0;
            for (int j = 0; j < g; j++)
            {
                if (!positive[j * a + i]) continue;
                if (!result.Foreground[i]) gt = j; // the first positive box (step 4 leaves at most one)
                result.Foreground[i] = true;
                norm = Math.Max(norm, align[j * a + i] * maxOverlap[j] / (maxAlign[j] + Eps));
            }
            result.TargetGt[i] = gt;
            var b = gts[gt];
            (result.TargetBoxes[4 * i], result.TargetBoxes[4 * i + 1], result.TargetBoxes[4 * i + 2], result.TargetBoxes[4 * i + 3]) = (b.X0, b.Y0, b.X1, b.Y1);
            if (result.Foreground[i]) result.TargetScores[i * classes + b.Class] = norm;
        }
        return result;
    }
}

/// <summary>
/// Complete IoU (Zheng et al. 2020) as Ultralytics' bbox_iou(CIoU=True, eps=1e-7), for boxes given by corners:
///   IoU - rho^2 / c^2 - alpha v,   v = 4 / pi^2 (atan(w2 / h2) - atan(w1 / h1))^2,   alpha = v / (v - IoU + 1 + eps)
/// rho: the distance between the centres; c: the diagonal of the smallest box enclosing both; heights get + eps.
/// </summary>
public static class Ciou
{
    public const double Eps = 1e-7;

    public static double Value(double ax0, double ay0, double ax1, double ay1, double bx0, double by0, double bx1, double by1)
    {
        double w1 = ax1 - ax0, h1 = ay1 - ay0 + Eps, w2 = bx1 - bx0, h2 = by1 - by0 + Eps;
        double inter = Math.Max(Math.Min(ax1, bx1) - Math.Max(ax0, bx0), 0) * Math.Max(Math.Min(ay1, by1) - Math.Max(ay0, by0), 0);
        double union = w1 * h1 + w2 * h2 - inter + Eps;
        double iou = inter / union;
        double cw = Math.Max(ax1, bx1) - Math.Min(ax0, bx0), ch = Math.Max(ay1, by1) - Math.Min(ay0, by0);
        double c2 = cw * cw + ch * ch + Eps;
        double rho2 = (Math.Pow(bx0 + bx1 - ax0 - ax1, 2) + Math.Pow(by0 + by1 - ay0 - ay1, 2)) / 4;
        double v = 4 / (Math.PI * Math.PI) * Math.Pow(Math.Atan(w2 / h2) - Math.Atan(w1 / h1), 2);
        double alpha = v / (v - iou + (1 + Eps));
        return iou - (rho2 / c2 + v * alpha);
    }
}
