using ManagedTensor.Nn;

namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>
/// YOLOv8's anchor-free decoupled head (Ultralytics' Detect): at each of the three scales (strides 8, 16, 32) a box
/// branch cv2 gives 4 x reg_max logits per cell (a distribution over distances 0..reg_max-1, in cells, from the
/// cell's centre to each side: left, top, right, bottom) and a class branch cv3 gives one logit per class.
/// Hidden widths: box max(16, ch0 / 4, 4 reg_max), class max(ch0, min(nc, 100)). Bias init as Ultralytics'
/// bias_init: box 1.0, class log(5 / nc / (640 / stride)^2) (about 5 objects per 640 image, so the first
/// losses are not swamped by confident background).
/// </summary>
public sealed class DetectHead : Module
{
    public static readonly int[] Strides = [8, 16, 32];

    public DetectHead(int classes, int regMax, int[] channels, Generator gen, Device device)
    {
        if (channels.Length != Strides.Length) throw new ArgumentException($"DetectHead: {channels.Length} input scales, expected {Strides.Length}");
        (Classes, RegMax) = (classes, regMax);
        int boxHidden = Math.Max(Math.Max(16, channels[0] / 4), 4 * regMax), clsHidden = Math.Max(channels[0], Math.Min(classes, 100));
        Cv2 = Child("cv2", new ModuleList<HeadBranch>(channels.Select(c => new HeadBranch(c, boxHidden, 4 * regMax, 1.0, gen, device)).ToList()));
        Cv3 = Child("cv3", new ModuleList<HeadBranch>(channels.Select((c, i) =>
            new HeadBranch(c, clsHidden, classes, Math.Log(5.0 / classes / Math.Pow(640.0 / Strides[i], 2)), gen, device)).ToList()));
    }

    public int Classes { get; }
    public int RegMax { get; }
    public ModuleList<HeadBranch> Cv2 { get; }
    public ModuleList<HeadBranch> Cv3 { get; }

    /// <summary>Raw outputs per scale: (N, 4 reg_max + nc, H_i, W_i), box logits first.</summary>
    public Tensor[] Forward(Tensor[] features) =>
        features.Select((f, i) => Tensor.Cat([Cv2[i].Forward(f), Cv3[i].Forward(f)], 1)).ToArray();

    /// <summary>
    /// The raw outputs of every scale as one (N, 4 reg_max + nc, A) tensor, A = sum of H_i W_i, cells in
    /// row-major order scale after scale (the order of <see cref="Anchors"/>).
    /// </summary>
    public static Tensor Flatten(Tensor[] outputs) =>
        Tensor.Cat(outputs.Select(o => o.Reshape(o.Shape[0], o.Shape[1], o.Shape[2] * o.Shape[3])).ToArray(), 2);

    /// <summary>
    /// Ultralytics' make_anchors(offset 0.5): for every cell of every scale its centre (x + 0.5, y + 0.5) in
    /// cells of that scale, and the scale's stride. Sizes are the input's divided by the strides.
    /// </summary>
    public static (float[] PointsXy, float[] Stride) Anchors(int height, int width)
    {
        var points = new List<float>();
        var strides = new List<float>();
        foreach (int s in Strides)
        {
            int h = (height + s - 1) / s, w = (width + s - 1) / s; // each 3x3 stride-2 conv (padding 1) takes n to ceil(n / 2)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    points.Add(x + 0.5f);
                    points.Add(y + 0.5f);
                    strides.Add(s);
                }
        }
        return (points.ToArray(), strides.ToArray());
    }

    /// <summary>
    /// DFL: the expected distance under each side's softmax over reg_max bins,
    /// d = sum_k softmax(logits)_k * k. (N, 4 reg_max, A) -> (N, 4, A), distances in cells (l, t, r, b).
    /// </summary>
    public static Tensor Dfl(Tensor boxLogits, int regMax)
    {
        int n = boxLogits.Shape[0], a = boxLogits.Shape[2];
        var bins = Tensor.Arange(regMax, boxLogits.DType, boxLogits.Device).Reshape(1, 1, regMax, 1);
        return (boxLogits.Reshape(n, 4, regMax, a).Softmax(2) * bins).Sum(2); // (N, 4, 16, A) -> (N, 4, A)
    }

    /// <summary>
    /// Inference output as Ultralytics' Detect in eval mode: (N, 4 + nc, A), rows cx, cy, w, h in input pixels
    /// (the anchor point minus left/top and plus right/bottom distances, times the stride), then the class
    /// probabilities (sigmoid).
    /// </summary>
    public Tensor Decode(Tensor[] outputs, int height, int width)
    {
        var x = Flatten(outputs);                                                   // (N, 4R + nc, A)
        int a = x.Shape[2];
        var (pts, st) = Anchors(height, width);
        if (pts.Length != 2 * a) throw new ArgumentException($"Detect: {a} cells in the outputs, {pts.Length / 2} anchors for a {width} x {height} input");
        var anchor = Tensor.FromArray(Transpose2(pts), [1, 2, a], x.Device);      // (1, 2, A)
        var stride = Tensor.FromArray(st, [1, 1, a], x.Device);                   // (1, 1, A)
        var dist = Dfl(x.Narrow(1, 0, 4 * RegMax), RegMax);                         // (N, 4, A)
        var x1y1 = anchor - dist.Narrow(1, 0, 2);
        var x2y2 = anchor + dist.Narrow(1, 2, 2);
        var box = Tensor.Cat([(x1y1 + x2y2) * 0.5, x2y2 - x1y1], 1) * stride;     // (N, 4, A) cx, cy, w, h
        return Tensor.Cat([box, x.Narrow(1, 4 * RegMax, Classes).Sigmoid()], 1);
    }

    /// <summary>(x0, y0, x1, y1, ...) -> (x0, x1, ..., y0, y1, ...).</summary>
    private static float[] Transpose2(float[] xy)
    {
        int a = xy.Length / 2;
        var r = new float[xy.Length];
        for (int i = 0; i < a; i++) (r[i], r[a + i]) = (xy[2 * i], xy[2 * i + 1]);
        return r;
    }
}
