using ManagedTensor.Nn;

namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>
/// A YOLOv8 size: depth and width multipliers and a channel cap, as the `scales` of Ultralytics' yolov8.yaml.
/// A layer of n blocks gets max(round(n * Depth), 1); a layer of c channels gets ceil(min(c, MaxChannels) * Width / 8) * 8.
/// </summary>
public sealed record YoloConfig(string Name, double Depth, double Width, int MaxChannels, int Classes, int RegMax = 16)
{
    public static readonly string[] Sizes = ["yolov8n", "yolov8s", "yolov8m", "yolov8l", "yolov8x"];

    public static YoloConfig For(string name, int classes)
    {
        if (classes < 1) throw new ArgumentException($"{name}: the number of classes must be at least 1, got {classes}");
        return name switch
        {
            "yolov8n" => new(name, 0.33, 0.25, 1024, classes),
            "yolov8s" => new(name, 0.33, 0.50, 1024, classes),
            "yolov8m" => new(name, 0.67, 0.75, 768, classes),
            "yolov8l" => new(name, 1.00, 1.00, 512, classes),
            "yolov8x" => new(name, 1.00, 1.25, 512, classes),
            _ => throw new ArgumentException($"model '{name}': expected one of {string.Join(", ", Sizes)}"),
        };
    }

    public int Channels(int c) => (int)Math.Ceiling(Math.Min(c, MaxChannels) * Width / 8) * 8;
    public int Blocks(int n) => n > 1 ? Math.Max((int)Math.Round(n * Depth, MidpointRounding.ToEven), 1) : n;
}

/// <summary>
/// YOLOv8 (Ultralytics' yolov8.yaml), read top to bottom. Layer i is registered as "model.i", so parameter names
/// are Ultralytics' own (model.2.m.0.cv1.conv.weight, model.22.cv3.1.2.bias, ...). yolov8.yaml's channels for
/// P1..P5, 64, 128, 256, 512, 1024, are capped and scaled by the width: yolov8n has 16, 32, 64, 128, 256, and one
/// block where yolov8.yaml says 3, two where it says 6.
///
///   backbone                                         head (PAN: top-down, then bottom-up)
///   0  Conv 3x3 s2      P1/2                         10 upsample x2 (nearest) of 9, 11 cat with 6, 12 C2f -> P4'
///   1  Conv 3x3 s2      P2/4                         13 upsample x2 of 12,        14 cat with 4, 15 C2f -> out P3/8
///   2  C2f x3 shortcut                               16 Conv 3x3 s2 of 15,        17 cat with 12, 18 C2f -> out P4/16
///   3  Conv 3x3 s2      P3/8                         19 Conv 3x3 s2 of 18,        20 cat with 9,  21 C2f -> out P5/32
///   4  C2f x6 shortcut                               22 Detect(15, 18, 21)
///   5  Conv 3x3 s2      P4/16
///   6  C2f x6 shortcut
///   7  Conv 3x3 s2      P5/32
///   8  C2f x3 shortcut
///   9  SPPF
/// The head's C2f have no shortcut. Inputs are (N, 3, H, W), RGB in [0, 1], H and W multiples of 32.
/// </summary>
public sealed class YoloV8 : Module
{
    public YoloV8(YoloConfig config, Generator gen, Device device)
    {
        Config = config;
        int p1 = config.Channels(64), p2 = config.Channels(128), p3 = config.Channels(256), p4 = config.Channels(512), p5 = config.Channels(1024);
        int n3 = config.Blocks(3), n6 = config.Blocks(6);
        ConvBnSilu Conv(int i, int a, int b) => Child($"model.{i}", new ConvBnSilu(a, b, 3, gen, device, stride: 2));
        C2f Csp(int i, int a, int b, int n, bool shortcut) => Child($"model.{i}", new C2f(a, b, n, shortcut, gen, device));

        L0 = Conv(0, 3, p1);
        L1 = Conv(1, p1, p2);
        L2 = Csp(2, p2, p2, n3, true);
        L3 = Conv(3, p2, p3);
        L4 = Csp(4, p3, p3, n6, true);
        L5 = Conv(5, p3, p4);
        L6 = Csp(6, p4, p4, n6, true);
        L7 = Conv(7, p4, p5);
        L8 = Csp(8, p5, p5, n3, true);
        L9 = Child("model.9", new Sppf(p5, p5, gen, device));
        L12 = Csp(12, p5 + p4, p4, n3, false);
        L15 = Csp(15, p4 + p3, p3, n3, false);
        L16 = Conv(16, p3, p3);
        L18 = Csp(18, p3 + p4, p4, n3, false);
        L19 = Conv(19, p4, p4);
        L21 = Csp(21, p4 + p5, p5, n3, false);
        Detect = Child("model.22", new DetectHead(config.Classes, config.RegMax, [p3, p4, p5], gen, device));
    }

    public YoloConfig Config { get; }
    public ConvBnSilu L0 { get; }
    public ConvBnSilu L1 { get; }
    public C2f L2 { get; }
    public ConvBnSilu L3 { get; }
    public C2f L4 { get; }
    public ConvBnSilu L5 { get; }
    public C2f L6 { get; }
    public ConvBnSilu L7 { get; }
    public C2f L8 { get; }
    public Sppf L9 { get; }
    public C2f L12 { get; }
    public C2f L15 { get; }
    public ConvBnSilu L16 { get; }
    public C2f L18 { get; }
    public ConvBnSilu L19 { get; }
    public C2f L21 { get; }
    public DetectHead Detect { get; }

    /// <summary>Raw head outputs at strides 8, 16, 32: (N, 4 reg_max + nc, H/s, W/s) each.</summary>
    public Tensor[] Forward(Tensor x) // (N, 3, H, W)
    {
        if (x.Rank != 4 || x.Shape[1] != 3 || x.Shape[2] % 32 != 0 || x.Shape[3] % 32 != 0)
            throw new ArgumentException($"{Config.Name}: input {x.Describe()} must be (N, 3, H, W) with H and W multiples of 32");
        var p3 = L4.Forward(L3.Forward(L2.Forward(L1.Forward(L0.Forward(x)))));  // (N, c3, H/8, W/8)
        var p4 = L6.Forward(L5.Forward(p3));                                      // (N, c4, H/16, W/16)
        var p5 = L9.Forward(L8.Forward(L7.Forward(p4)));                          // (N, c5, H/32, W/32)
        var t4 = L12.Forward(Tensor.Cat([p5.UpsampleNearest2d(2), p4], 1));      // top-down
        var o3 = L15.Forward(Tensor.Cat([t4.UpsampleNearest2d(2), p3], 1));      // out P3
        var o4 = L18.Forward(Tensor.Cat([L16.Forward(o3), t4], 1));              // bottom-up, out P4
        var o5 = L21.Forward(Tensor.Cat([L19.Forward(o4), p5], 1));              // out P5
        return Detect.Forward([o3, o4, o5]);
    }

    /// <summary>Boxes (cx, cy, w, h in input pixels) and class probabilities: (N, 4 + nc, A).</summary>
    public Tensor Predict(Tensor x) => Detect.Decode(Forward(x), x.Shape[2], x.Shape[3]);

    /// <summary>Every Conv-BN-SiLU of the network.</summary>
    public IEnumerable<ConvBnSilu> ConvBlocks() => Descendants(this).OfType<ConvBnSilu>();

    /// <summary>Eval mode with every batch norm folded into its conv (Ultralytics' model.fuse()).</summary>
    public void Fuse()
    {
        Eval();
        foreach (var c in ConvBlocks()) c.Fuse();
    }

    /// <summary>Training mode; folded weights are dropped (training changes what they were folded from).</summary>
    public void TrainMode()
    {
        foreach (var c in ConvBlocks()) c.Unfuse();
        Train();
    }

    private static IEnumerable<Module> Descendants(Module m)
    {
        yield return m;
        foreach (var (_, child) in m.NamedChildren())
            foreach (var d in Descendants(child)) yield return d;
    }
}
