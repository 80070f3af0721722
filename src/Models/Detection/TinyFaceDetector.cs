using ManagedTensor.Models.Formats;

namespace ManagedTensor.Models.Detection;

/// <summary>
/// face-api's TinyFaceDetector (@vladmandic/face-api 1.7.15, src/tinyFaceDetector and src/tinyYolov2): a
/// Tiny-YOLOv2 with depthwise-separable convolutions and one class, on the project's conv ops, with the
/// library's own pre- and post-processing so that its boxes and scores come out (tests/fixtures/tiny_face_detector).
///
///   input (1, 3, 416, 416): the image padded to a square at the right or bottom with zeros, resized by
///         TF's legacy bilinear rule, minus the mean RGB, divided by 255
///   conv0     3x3 conv 3->16, no padding ('valid'), leaky ReLU          (1, 16, 414, 414)
///   maxpool   2x2 stride 2, TF 'same'                                   (1, 16, 207, 207)
///   conv1..5  [pad 1, 3x3 depthwise, 1x1 pointwise, bias, leaky ReLU] then maxpool 2x2 'same',
///             stride 2 after conv1..4, stride 1 after conv5             (1, 512, 13, 13)
///   conv8     1x1 conv 512->25 (5 anchors x [tx, ty, tw, th, objectness])  (1, 25, 13, 13)
/// Leaky ReLU has slope 0.1. A box at cell (row, col) and anchor a: centre ((col + sigmoid(tx)) / 13,
/// (row + sigmoid(ty)) / 13), size (exp(tw) * anchor_w / 13, exp(th) * anchor_h / 13) of the padded square,
/// score sigmoid(objectness); boxes above the threshold go through NMS at IoU 0.4.
/// </summary>
public sealed class TinyFaceDetector
{
    public const int DefaultInputSize = 416;
    public const double DefaultScoreThreshold = 0.5;
    public const double IouThreshold = 0.4;
    public const string ManifestName = "tiny_face_detector_model-weights_manifest.json";

    /// <summary>Anchor sizes in grid cells (src/tinyFaceDetector/const.ts).</summary>
    private static readonly (double W, double H)[] Anchors =
        [(1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061), (4.266906, 5.178857), (9.041765, 10.66308)];

    private static readonly float[] MeanRgb = [117.001f, 114.697f, 97.404f];

    private sealed record SeparableConv(Tensor Depthwise, Tensor Pointwise, Tensor Bias); // (C, 1, 3, 3), (O, C, 1, 1), (O)

    private readonly Tensor _conv0W, _conv0B, _conv8W, _conv8B; // (16, 3, 3, 3), (16), (25, 512, 1, 1), (25)
    private readonly SeparableConv[] _convs;                   // conv1..conv5

    public Device Device { get; }

    private TinyFaceDetector(Device device, Tensor conv0W, Tensor conv0B, SeparableConv[] convs, Tensor conv8W, Tensor conv8B)
    {
        (Device, _conv0W, _conv0B, _convs, _conv8W, _conv8B) = (device, conv0W, conv0B, convs, conv8W, conv8B);
    }

    /// <summary>Loads face-api's weights: a folder holding <see cref="ManifestName"/>, or the manifest itself.</summary>
    public static TinyFaceDetector Load(string path, Device? device = null)
    {
        var dev = device ?? Device.Cpu;
        string manifest = Directory.Exists(path) ? Path.Combine(path, ManifestName) : path;
        var weights = TfjsWeights.Read(manifest);

        // TF.js keeps filters as HWIO (and depthwise filters as (H, W, C, multiplier)); conv2d here takes OIHW.
        Tensor Get(string name, int[] shape, params int[] toTorch)
        {
            if (!weights.TryGetValue(name, out var w))
                throw new InvalidModelFileException(manifest, $"weight {name} is missing: not face-api's tiny face detector (it has {string.Join(", ", weights.Keys.Take(4))}...)");
            if (!w.Shape.SequenceEqual(shape))
                throw new InvalidModelFileException(manifest, $"weight {name} has shape [{string.Join(", ", w.Shape)}], the tiny face detector's is [{string.Join(", ", shape)}]");
            var t = Tensor.FromArray(w.Values, w.Shape);
            return (toTorch.Length == 0 ? t : t.Permute(toTorch).Contiguous()).To(dev);
        }

        int[] widths = [16, 32, 64, 128, 256, 512];
        var convs = new SeparableConv[5];
        for (int i = 1; i <= 5; i++)
        {
            int cin = widths[i - 1], cout = widths[i];
            convs[i - 1] = new SeparableConv(
                Get($"conv{i}/depthwise_filter", [3, 3, cin, 1], 2, 3, 0, 1),
                Get($"conv{i}/pointwise_filter", [1, 1, cin, cout], 3, 2, 0, 1),
                Get($"conv{i}/bias", [cout]));
        }
        return new TinyFaceDetector(dev,
            Get("conv0/filters", [3, 3, 3, 16], 3, 2, 0, 1), Get("conv0/bias", [16]), convs,
            Get("conv8/filters", [1, 1, 512, 25], 3, 2, 0, 1), Get("conv8/bias", [25]));
    }

    /// <summary>The network: x (N, 3, S, S) preprocessed -> (N, 25, S/32, S/32), channel = anchor * 5 + [tx, ty, tw, th, objectness].</summary>
    public Tensor Forward(Tensor x)
    {
        var h = Leaky(Tensor.Conv2d(x, _conv0W, _conv0B));        // (N, 16, S-2, S-2): 'valid'
        h = MaxPoolSame(h, 2);
        for (int i = 0; i < _convs.Length; i++)
        {
            var c = _convs[i];
            h = Tensor.Conv2d(h, c.Depthwise, null, padding: 1, groups: h.Shape[1]); // depthwise 3x3
            h = Leaky(Tensor.Conv2d(h, c.Pointwise, c.Bias));                         // pointwise 1x1
            h = MaxPoolSame(h, i < 4 ? 2 : 1);
        }
        return Tensor.Conv2d(h, _conv8W, _conv8B);
    }

    /// <summary>face-api's leaky ReLU written as it writes it: relu(x - 0.1x) + 0.1x (0.1 rounded to float32).</summary>
    private static Tensor Leaky(Tensor x)
    {
        var min = x * 0.10000000149011612;
        return (x - min).Relu() + min;
    }

    /// <summary>
    /// tf.maxPool(x, [2, 2], stride, 'same'): out = ceil(in / stride), and the window overhang
    /// (out - 1) * stride + 2 - in is padded with -inf, the smaller half before, the larger after.
    /// </summary>
    private static Tensor MaxPoolSame(Tensor x, int stride)
    {
        int padH = Math.Max(0, ((x.Shape[2] + stride - 1) / stride - 1) * stride + 2 - x.Shape[2]);
        int padW = Math.Max(0, ((x.Shape[3] + stride - 1) / stride - 1) * stride + 2 - x.Shape[3]);
        x = PadNegInf(x, 2, padH / 2, padH - padH / 2);
        x = PadNegInf(x, 3, padW / 2, padW - padW / 2);
        return x.MaxPool2d(new Pool2dAttrs(2, 2, stride, stride, 0, 0));
    }

    private static Tensor PadNegInf(Tensor x, int axis, int before, int after)
    {
        if (before == 0 && after == 0) return x;
        Tensor Side(int n)
        {
            var shape = (int[])x.Shape.Clone();
            shape[axis] = n;
            return Tensor.Full(shape, double.NegativeInfinity, x.DType, x.Device);
        }
        var parts = new List<Tensor>();
        if (before > 0) parts.Add(Side(before));
        parts.Add(x);
        if (after > 0) parts.Add(Side(after));
        return Tensor.Cat([.. parts], axis);
    }

    /// <summary>
    /// face-api's input (NetInput.toBatchTensor with isCenterInputs = false, then normalize and div 255):
    /// the image padded with zeros at the right or bottom to a square, resized to (S, S) by TF's legacy bilinear
    /// rule (align_corners = false, half_pixel_centers = false: source = destination * in / out, no half-pixel
    /// shift), the mean RGB subtracted and divided by 255, in float32. Returns (1, 3, S, S).
    /// </summary>
    public Tensor Preprocess(RgbImage image, int inputSize = DefaultInputSize)
    {
        int side = Math.Max(image.Width, image.Height);
        float Padded(int y, int x, int c) => y < image.Height && x < image.Width ? image[y, x, c] : 0f;
        var input = new float[3 * inputSize * inputSize];
        double ratio = (double)side / inputSize;
        for (int r = 0; r < inputSize; r++)
        {
            double fy = ratio * r;
            int y0 = (int)Math.Floor(fy), y1 = Math.Min(side - 1, (int)Math.Ceiling(fy));
            double dy = fy - y0;
            for (int col = 0; col < inputSize; col++)
            {
                double fx = ratio * col;
                int x0 = (int)Math.Floor(fx), x1 = Math.Min(side - 1, (int)Math.Ceiling(fx));
                double dx = fx - x0;
                for (int c = 0; c < 3; c++)
                {
                    double top = Padded(y0, x0, c) + (Padded(y0, x1, c) - Padded(y0, x0, c)) * dx;
                    double bottom = Padded(y1, x0, c) + (Padded(y1, x1, c) - Padded(y1, x0, c)) * dx;
                    float v = (float)(top + (bottom - top) * dy);
                    input[(c * inputSize + r) * inputSize + col] = (v - MeanRgb[c]) / 255f;
                }
            }
        }
        return Tensor.FromArray(input, [1, 3, inputSize, inputSize]).To(Device);
    }

    /// <summary>Faces in <paramref name="image"/>, boxes in its pixels, best first.</summary>
    public List<Detection> Detect(RgbImage image, double scoreThreshold = DefaultScoreThreshold, int inputSize = DefaultInputSize)
    {
        if (inputSize <= 0 || inputSize % 32 != 0) throw new ArgumentException($"input size {inputSize}: must be a positive multiple of 32");
        if (!(scoreThreshold > 0 && scoreThreshold < 1)) throw new ArgumentException($"score threshold {scoreThreshold}: must lie in (0, 1)");
        float[] grid;
        using (GradMode.NoGrad())
            grid = Forward(Preprocess(image, inputSize)).To(Device.Cpu).ToArray<float>();
        return Decode(grid, inputSize / 32, image.Width, image.Height, inputSize, scoreThreshold);
    }

    /// <summary>
    /// Boxes from the raw output grid (25, g, g), as TinyYolov2Base.extractBoxes and ObjectDetection do: the
    /// padded square's coordinates are stretched back to the image by inputSize / round(side * scale) per axis
    /// (face-api's computeReshapedDimensions rounds), then scaled to the image's pixels; NMS at IoU 0.4.
    /// </summary>
    public static List<Detection> Decode(float[] grid, int g, int width, int height, int inputSize, double scoreThreshold)
    {
        double scale = (double)inputSize / Math.Max(width, height);
        double reshapedW = Math.Round(width * scale), reshapedH = Math.Round(height * scale);
        double side = Math.Max(reshapedW, reshapedH);
        double fx = side / reshapedW, fy = side / reshapedH;
        float At(int a, int k, int row, int col) => grid[((a * 5 + k) * g + row) * g + col];
        var found = new List<Detection>();
        for (int row = 0; row < g; row++)
            for (int col = 0; col < g; col++)
                for (int a = 0; a < Anchors.Length; a++)
                {
                    double score = Sigmoid(At(a, 4, row, col));
                    if (score <= scoreThreshold) continue;
                    double cx = (col + Sigmoid(At(a, 0, row, col))) / g * fx;
                    double cy = (row + Sigmoid(At(a, 1, row, col))) / g * fy;
                    double w = Math.Exp(At(a, 2, row, col)) * Anchors[a].W / g * fx;
                    double h = Math.Exp(At(a, 3, row, col)) * Anchors[a].H / g * fy;
                    found.Add(new Detection((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height, score));
                }
        return Boxes.Nms(found, IouThreshold, classAware: false);
    }

    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));
}
