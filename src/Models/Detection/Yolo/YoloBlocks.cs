using ManagedTensor.Nn;

namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>
/// Ultralytics' Conv: a bias-free k x k convolution (padding k/2), BatchNorm2d (eps 1e-3, momentum 0.03, as
/// Ultralytics' initialize_weights sets them) and SiLU, the norm and SiLU as one op in training (BatchNorm2d.ForwardSilu).
/// Names as Ultralytics' state dict: conv.weight, bn.*.
/// <see cref="Fuse"/> folds the batch norm into the conv (W' = W * scale, b' = shift per output channel) for
/// inference: afterwards the forward is one op, Conv2dSilu (the conv with a bias, SiLU applied as its output is written).
/// </summary>
public sealed class ConvBnSilu : Module
{
    public ConvBnSilu(int cIn, int cOut, int kernel, Generator gen, Device device, int stride = 1)
    {
        Conv = Child("conv", new Conv2d(cIn, cOut, kernel, gen, device, stride, kernel / 2, bias: false));
        Bn = Child("bn", new BatchNorm2d(cOut, device, eps: 1e-3, momentum: 0.03));
    }

    public Conv2d Conv { get; }
    public BatchNorm2d Bn { get; }
    private (Tensor Weight, Tensor Bias)? _fused;
    public bool IsFused => _fused is not null;

    public Tensor Forward(Tensor x) => // (N, cIn, H, W) -> (N, cOut, H/stride, W/stride)
        _fused is { } f ? Tensor.Conv2dSilu(x, f.Weight, f.Bias, Conv.Attrs) : Bn.ForwardSilu(Conv.Forward(x));

    /// <summary>Folds the batch norm's eval-mode affine map into the conv (call after training, in eval mode).</summary>
    public void Fuse() => _fused = Bn.FoldInto(Conv.Weight, null);

    /// <summary>Drops the folded weights (they go stale once the parameters train again).</summary>
    public void Unfuse() => _fused = null;
}

/// <summary>Two 3x3 Convs with a residual connection when asked and the shapes allow (Ultralytics' Bottleneck, e = 1).</summary>
public sealed class Bottleneck : Module
{
    public Bottleneck(int c, bool shortcut, Generator gen, Device device)
    {
        Cv1 = Child("cv1", new ConvBnSilu(c, c, 3, gen, device));
        Cv2 = Child("cv2", new ConvBnSilu(c, c, 3, gen, device));
        Shortcut = shortcut;
    }

    public ConvBnSilu Cv1 { get; }
    public ConvBnSilu Cv2 { get; }
    public bool Shortcut { get; }

    public Tensor Forward(Tensor x) => Shortcut ? x + Cv2.Forward(Cv1.Forward(x)) : Cv2.Forward(Cv1.Forward(x));
}

/// <summary>
/// C2f, YOLOv8's "CSP bottleneck with 2 convolutions", with c = cOut / 2:
///   y0, y1 = split(cv1(x), 2)            1x1 conv to 2c channels, halves of c
///   y_{k+1} = bottleneck_k(y_k)          n bottlenecks in a chain, every output kept
///   out = cv2(cat(y0, y1, ..., y_{n+1}))  1x1 conv from (2 + n) c channels to cOut
/// </summary>
public sealed class C2f : Module
{
    public C2f(int cIn, int cOut, int n, bool shortcut, Generator gen, Device device)
    {
        Hidden = cOut / 2;
        Cv1 = Child("cv1", new ConvBnSilu(cIn, 2 * Hidden, 1, gen, device));
        Cv2 = Child("cv2", new ConvBnSilu((2 + n) * Hidden, cOut, 1, gen, device));
        M = Child("m", new ModuleList<Bottleneck>(Enumerable.Range(0, n).Select(_ => new Bottleneck(Hidden, shortcut, gen, device)).ToList()));
    }

    public int Hidden { get; }
    public ConvBnSilu Cv1 { get; }
    public ConvBnSilu Cv2 { get; }
    public ModuleList<Bottleneck> M { get; }

    public Tensor Forward(Tensor x)
    {
        var y = Cv1.Forward(x).Split(Hidden, 1).ToList();  // 2 x (N, c, H, W)
        foreach (var b in M.Items) y.Add(b.Forward(y[^1]));
        return Cv2.Forward(Tensor.Cat(y.ToArray(), 1));    // (N, (2 + n) c, H, W) -> (N, cOut, H, W)
    }
}

/// <summary>
/// Spatial pyramid pooling, fast: a 1x1 conv to cIn / 2 channels, three 5x5 max-pools (stride 1, padding 2) in a
/// chain (receptive fields 5, 9, 13), the four maps concatenated and a 1x1 conv to cOut.
/// </summary>
public sealed class Sppf : Module
{
    public Sppf(int cIn, int cOut, Generator gen, Device device, int k = 5)
    {
        Cv1 = Child("cv1", new ConvBnSilu(cIn, cIn / 2, 1, gen, device));
        Cv2 = Child("cv2", new ConvBnSilu(cIn / 2 * 4, cOut, 1, gen, device));
        Kernel = k;
    }

    public ConvBnSilu Cv1 { get; }
    public ConvBnSilu Cv2 { get; }
    public int Kernel { get; }

    public Tensor Forward(Tensor x)
    {
        var y0 = Cv1.Forward(x);
        var y1 = y0.MaxPool2d(Kernel, 1, Kernel / 2);
        var y2 = y1.MaxPool2d(Kernel, 1, Kernel / 2);
        var y3 = y2.MaxPool2d(Kernel, 1, Kernel / 2);
        return Cv2.Forward(Tensor.Cat([y0, y1, y2, y3], 1));
    }
}

/// <summary>One branch of the detect head at one scale: Conv 3x3, Conv 3x3, then a plain 1x1 conv with a bias (names 0, 1, 2).</summary>
public sealed class HeadBranch : Module
{
    public HeadBranch(int cIn, int hidden, int cOut, double biasInit, Generator gen, Device device)
    {
        A = Child("0", new ConvBnSilu(cIn, hidden, 3, gen, device));
        B = Child("1", new ConvBnSilu(hidden, hidden, 3, gen, device));
        Out = Child("2", new Conv2d(hidden, cOut, 1, gen, device));
        using (GradMode.NoGrad()) Out.Bias!.Fill_(biasInit);
    }

    public ConvBnSilu A { get; }
    public ConvBnSilu B { get; }
    public Conv2d Out { get; }

    public Tensor Forward(Tensor x) => Out.Forward(B.Forward(A.Forward(x)));
}
