namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>
/// YOLOv8's training loss, as Ultralytics' v8DetectionLoss, on the head's raw outputs. With A cells (all scales) and
/// the <see cref="TaskAlignedAssigner"/>'s targets (score vectors s_a, boxes, foreground cells F):
///   cls = sum over all cells and classes of BCE-with-logits(logit, s) / S,            S = max(sum of all s, 1)
///   box = sum over F of (1 - CIoU(predicted box, target box)) w_a / S,                 w_a = sum of s_a
///   dfl = sum over F of w_a mean over the 4 sides of [CE(logits, floor(d)) (floor(d) + 1 - d) + CE(logits, floor(d) + 1) (d - floor(d))] / S
/// where d is the target distance from the cell centre to the side, in cells, clamped to [0, reg_max - 1.01].
/// Predicted boxes are the cell centre minus/plus the DFL expectations (in cells). The loss to minimize is
/// (7.5 box + 0.5 cls + 1.5 dfl) * batch size (Ultralytics' default gains and its sum over the batch).
/// </summary>
public static class YoloLoss
{
    public const double BoxGain = 7.5, ClsGain = 0.5, DflGain = 1.5;

    /// <summary>The loss to backpropagate and its three parts (before the gains), as Ultralytics logs them.</summary>
    public sealed record Result(Tensor Total, double Box, double Cls, double Dfl, int Foreground);

    /// <param name="outputs">The head's raw outputs per scale, (N, 4 reg_max + nc, H/s, W/s).</param>
    /// <param name="targets">Per image, its boxes in input pixels.</param>
    public static Result Compute(Tensor[] outputs, IReadOnlyList<IReadOnlyList<GtBox>> targets, int classes, int regMax, int height, int width)
        => Compute(outputs, targets, classes, regMax, height, width, out _);

    /// <summary>As above; also gives the assigner's result per image (for tests).</summary>
    public static Result Compute(Tensor[] outputs, IReadOnlyList<IReadOnlyList<GtBox>> targets, int classes, int regMax, int height, int width,
        out TaskAlignedAssigner.Result[] assigned)
    {
        var x = DetectHead.Flatten(outputs);                                      // (N, 4R + nc, A)
        int n = x.Shape[0], a = x.Shape[2], r = regMax;
        if (x.Shape[1] != 4 * r + classes) throw new ArgumentException($"YOLO loss: outputs have {x.Shape[1]} channels, expected 4 x {r} + {classes}");
        if (targets.Count != n) throw new ArgumentException($"YOLO loss: {n} images of outputs but {targets.Count} of targets");
        var dtype = x.DType;
        var dev = x.Device;
        Tensor Const(double[] v, params int[] shape) => Tensor.FromArray(v, shape, dev).To(dtype);
        var (pts, st) = DetectHead.Anchors(height, width);
        if (pts.Length != 2 * a) throw new ArgumentException($"YOLO loss: {a} cells in the outputs, {pts.Length / 2} anchors for a {width} x {height} input");

        var distLogits = x.Narrow(1, 0, 4 * r).Permute(0, 2, 1).Reshape(n * a * 4, r);  // (N A 4, R): one row per cell and side
        var clsLogits = x.Narrow(1, 4 * r, classes).Permute(0, 2, 1);                      // (N, A, nc)

        // Predicted boxes in cells: centre -+ expected distance (DFL), (N A, 4) x0, y0, x1, y1.
        var centre = new double[n * a * 4];
        var sign = new double[4] { -1, -1, 1, 1 };
        for (int b = 0; b < n; b++)
            for (int i = 0; i < a; i++)
                for (int k = 0; k < 4; k++) centre[(b * a + i) * 4 + k] = pts[2 * i + (k & 1)];
        var bins = Const(Enumerable.Range(0, r).Select(v => (double)v).ToArray(), 1, r);
        var dist = (distLogits.Softmax(-1) * bins).Sum(-1).Reshape(n * a, 4);             // (N A, 4)
        var predBoxes = Const(centre, n * a, 4) + dist * Const(sign, 1, 4);

        // The assigner, per image, on detached predictions in pixels.
        var scoresHost = clsLogits.Detach().Sigmoid().ToDoubleArray();
        var boxesHost = predBoxes.Detach().ToDoubleArray();
        var anchorsPx = new double[2 * a];
        for (int i = 0; i < a; i++) (anchorsPx[2 * i], anchorsPx[2 * i + 1]) = (pts[2 * i] * st[i], pts[2 * i + 1] * st[i]);
        assigned = new TaskAlignedAssigner.Result[n];
        var targetScores = new double[n * a * classes];
        var fg = new List<int>();
        for (int b = 0; b < n; b++)
        {
            var px = new double[a * 4];
            for (int i = 0; i < a; i++)
                for (int k = 0; k < 4; k++) px[4 * i + k] = boxesHost[(b * a + i) * 4 + k] * st[i];
            assigned[b] = TaskAlignedAssigner.Assign(scoresHost.AsSpan(b * a * classes, a * classes), px, anchorsPx, targets[b], classes);
            assigned[b].TargetScores.CopyTo(targetScores, b * a * classes);
            for (int i = 0; i < a; i++) if (assigned[b].Foreground[i]) fg.Add(b * a + i);
        }
        double scoreSum = Math.Max(targetScores.Sum(), 1);

        // Classification: BCE with logits, log(1 + e^-|x|) + max(x, 0) - x s (stable for any x), one op each way.
        var s = Const(targetScores, n, a, classes);
        var cls = clsLogits.BceWithLogits(s).Sum() * (1 / scoreSum);
        var total = cls * ClsGain;
        double boxValue = 0, dflValue = 0;

        if (fg.Count > 0)
        {
            int f = fg.Count;
            var weight = new double[f];
            var tBox = new double[f * 4];        // target boxes in cells
            var dflTargets = new double[f * 4 * r];
            for (int j = 0; j < f; j++)
            {
                int b = fg[j] / a, i = fg[j] % a;
                for (int c = 0; c < classes; c++) weight[j] += targetScores[fg[j] * classes + c];
                for (int k = 0; k < 4; k++) tBox[4 * j + k] = assigned[b].TargetBoxes[4 * i + k] / st[i];
                // target distances l, t, r, b from the centre, spread over the two nearest bins
                double cx = pts[2 * i], cy = pts[2 * i + 1];
                double[] d = [cx - tBox[4 * j], cy - tBox[4 * j + 1], tBox[4 * j + 2] - cx, tBox[4 * j + 3] - cy];
                for (int k = 0; k < 4; k++)
                {
                    double t = Math.Clamp(d[k], 0, r - 1 - 0.01);
                    int lo = (int)t;
                    dflTargets[(j * 4 + k) * r + lo] = lo + 1 - t;
                    dflTargets[(j * 4 + k) * r + lo + 1] = t - lo;
                }
            }
            var idx = Tensor.FromArray(fg.ToArray(), [f], dev);
            var w = Const(weight, f);
            var ciou = CompleteIou(predBoxes.IndexSelect(0, idx), Const(tBox, f, 4));     // (F)
            var box = ((1 - ciou) * w).Sum() * (1 / scoreSum);

            var sideIdx = Tensor.FromArray(fg.SelectMany(c => Enumerable.Range(4 * c, 4)).ToArray(), [4 * f], dev);
            var logp = distLogits.IndexSelect(0, sideIdx).LogSoftmax(-1);                      // (F 4, R)
            var dfl = ((logp * Const(dflTargets, 4 * f, r)).Sum(-1).Reshape(f, 4).Mean(1).Neg() * w).Sum() * (1 / scoreSum);
            total = total + box * BoxGain + dfl * DflGain;
            (boxValue, dflValue) = (box.Item(), dfl.Item());
        }
        return new Result(total * n, boxValue, cls.Item(), dflValue, fg.Count);
    }

    /// <summary>
    /// <see cref="Ciou"/> of predicted boxes p (with gradient) against fixed targets t, both (F, 4) corners -> (F).
    /// The engine has no arctangent op, so atan(w/h) of the prediction enters as its first-order expansion around
    /// its own value, atan(r0) + (r - r0) / (1 + r0^2) with r0 = r detached: the value is atan(r) and the gradient
    /// atan'(r), exactly, which is all a first-order backward pass reads. alpha is a constant, as in Ultralytics.
    /// </summary>
    public static Tensor CompleteIou(Tensor p, Tensor t)
    {
        const double eps = Ciou.Eps;
        Tensor Col(Tensor b, int k) => b.Narrow(1, k, 1).Reshape(b.Shape[0]);
        var (px0, py0, px1, py1) = (Col(p, 0), Col(p, 1), Col(p, 2), Col(p, 3));
        var (tx0, ty0, tx1, ty1) = (Col(t, 0), Col(t, 1), Col(t, 2), Col(t, 3));
        var (w1, h1, w2, h2) = (px1 - px0, (py1 - py0).AddScalar(eps), tx1 - tx0, (ty1 - ty0).AddScalar(eps));
        var inter = (px1.Minimum(tx1) - px0.Maximum(tx0)).Relu() * (py1.Minimum(ty1) - py0.Maximum(ty0)).Relu();
        var iou = inter / (w1 * h1 + w2 * h2 - inter).AddScalar(eps);
        var cw = px1.Maximum(tx1) - px0.Minimum(tx0);
        var ch = py1.Maximum(ty1) - py0.Minimum(ty0);
        var c2 = (cw.Square() + ch.Square()).AddScalar(eps);
        var rho2 = ((tx0 + tx1 - px0 - px1).Square() + (ty0 + ty1 - py0 - py1).Square()) * 0.25;

        var ratio = w1 / h1;
        var r0 = ratio.Detach().ToDoubleArray();
        Tensor Host(Func<double, double> fn) => Tensor.FromArray(r0.Select(fn).ToArray(), [r0.Length], p.Device).To(p.DType);
        var atanPred = Host(Math.Atan) + (ratio - ratio.Detach()) * Host(v => 1 / (1 + v * v));
        var rt = (w2 / h2).ToDoubleArray();
        var atanTarget = Tensor.FromArray(rt.Select(Math.Atan).ToArray(), [rt.Length], p.Device).To(p.DType);
        var v = (atanTarget - atanPred).Square() * (4 / (Math.PI * Math.PI));
        var alpha = (v / (v - iou).AddScalar(1 + eps)).Detach();
        return iou - (rho2 / c2 + v * alpha);
    }
}
