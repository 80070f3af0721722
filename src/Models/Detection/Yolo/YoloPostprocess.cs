namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>
/// From the head's decoded output to boxes, as Ultralytics' non_max_suppression (single label per box): each cell's
/// best class, kept when its probability exceeds the confidence threshold; class-aware greedy NMS at an IoU
/// threshold; at most <c>maxDetections</c> boxes, best first. Defaults: predict conf 0.25, val conf 0.001, IoU 0.7.
/// Also the pixels-to-tensor step every YOLO input goes through (letterbox, RGB / 255, NCHW).
/// </summary>
public static class YoloPostprocess
{
    public const double PredictConfidence = 0.25, ValConfidence = 0.001, NmsIou = 0.7;
    public const int MaxDetections = 300;

    /// <summary>Boxes of image <paramref name="image"/> from <paramref name="decoded"/> (N, 4 + nc, A) on the input's pixels.</summary>
    public static List<Detection> Boxes(double[] decoded, int image, int classes, int cells, double confidence, double iou = NmsIou, int maxDetections = MaxDetections)
    {
        int rows = 4 + classes, baseIndex = image * rows * cells;
        double At(int row, int cell) => decoded[baseIndex + row * cells + cell];
        var found = new List<Detection>();
        for (int a = 0; a < cells; a++)
        {
            int best = 0;
            for (int c = 1; c < classes; c++) if (At(4 + c, a) > At(4 + best, a)) best = c;
            double score = At(4 + best, a);
            if (score <= confidence) continue;
            double w = At(2, a), h = At(3, a);
            found.Add(new Detection(At(0, a) - w / 2, At(1, a) - h / 2, w, h, score, best));
        }
        var kept = ManagedTensor.Models.Detection.Boxes.Nms(found, iou, classAware: true);
        return kept.Count > maxDetections ? kept.GetRange(0, maxDetections) : kept;
    }

    /// <summary>Letterboxed images as one (N, 3, S, S) float tensor of RGB / 255.</summary>
    public static Tensor ToTensor(IReadOnlyList<RgbImage> images, Device device)
    {
        int s = images[0].Width, plane = s * s;
        var data = new float[images.Count * 3 * plane];
        for (int n = 0; n < images.Count; n++)
        {
            var px = images[n].Pixels;
            if (images[n].Width != s || images[n].Height != s) throw new ArgumentException($"image {n}: {images[n].Width} x {images[n].Height}, expected {s} x {s} (letterbox first)");
            for (int i = 0; i < plane; i++)
                for (int c = 0; c < 3; c++) data[(n * 3 + c) * plane + i] = px[i * 3 + c] / 255f;
        }
        return Tensor.FromArray(data, [images.Count, 3, s, s], device);
    }
}
