namespace ManagedTensor.Models.Detection;

/// <summary>One detected object: a box in image pixels (left, top, width, height), its score and class.</summary>
public readonly record struct Detection(double X, double Y, double Width, double Height, double Score, int Class = 0)
{
    public double Right => X + Width;
    public double Bottom => Y + Height;
    public double Area => Width * Height;
}

/// <summary>Box overlap and non-maximum suppression.</summary>
public static class Boxes
{
    /// <summary>Intersection over union of two boxes (0 when they do not touch).</summary>
    public static double Iou(in Detection a, in Detection b)
    {
        double w = Math.Max(0, Math.Min(a.Right, b.Right) - Math.Max(a.X, b.X));
        double h = Math.Max(0, Math.Min(a.Bottom, b.Bottom) - Math.Max(a.Y, b.Y));
        double inter = w * h;
        return inter / (a.Area + b.Area - inter);
    }

    /// <summary>
    /// Greedy non-maximum suppression: take the highest-scoring box left, drop every other box of the same
    /// class (every box when <paramref name="classAware"/> is false) whose IoU with it exceeds
    /// <paramref name="iouThreshold"/>, repeat. Ties in score go to the later box, as face-api's
    /// nonMaxSuppression (a stable ascending sort, then pop from the end). Returns the kept boxes, best first.
    /// </summary>
    public static List<Detection> Nms(IReadOnlyList<Detection> boxes, double iouThreshold, bool classAware = true)
    {
        var order = Enumerable.Range(0, boxes.Count).OrderBy(i => boxes[i].Score).ToList(); // stable, ascending
        var kept = new List<Detection>();
        while (order.Count > 0)
        {
            var best = boxes[order[^1]];
            order.RemoveAt(order.Count - 1);
            kept.Add(best);
            order.RemoveAll(i => (!classAware || boxes[i].Class == best.Class) && Iou(best, boxes[i]) > iouThreshold);
        }
        return kept;
    }
}
