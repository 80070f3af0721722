using System.Numerics;
using System.Numerics.Tensors;

namespace ManagedTensor.Cpu;

/// <summary>
/// Max / average pooling and nearest upsampling over NCHW planes. Every (n, c) plane is independent, so
/// planes run in parallel; backward passes write only into their own plane, so they need no atomics.
/// Window (oh, ow) covers input rows oh*sh - ph .. + KH - 1 and columns ow*sw - pw .. + KW - 1.
/// </summary>
internal static class CpuPool
{
    private static int Planes(Tensor t) => t.Shape[0] * t.Shape[1];

    public static void MaxPool2d(Tensor x, Tensor y, Tensor argmax, Pool2dAttrs p)
    {
        switch (x.DType)
        {
            case DType.F32: MaxPool2d<float>(x, y, argmax, p); break;
            case DType.F64: MaxPool2d<double>(x, y, argmax, p); break;
            default: throw NnKernels.Unsupported("MaxPool2d", x);
        }
    }

    /// <summary>
    /// y = max over the window's in-bounds elements (padding acts as -inf), argmax = ih*W + iw of the first
    /// maximum in row-major window order; a NaN wins (the last NaN of the window), as in PyTorch.
    /// Separable: a window's max is the max over its rows of each row's max over the window's columns, so a row pass
    /// takes (H, OW) maxima over KW columns and a column pass takes (OH, OW) maxima of those over KH rows: KH + KW
    /// steps per output instead of KH * KW (YOLOv8's SPPF pools 5 x 5). The argmax survives: the row pass keeps the
    /// first (or last NaN) column of each row, the column pass the first (or last NaN) row, which together are the
    /// first maximum (or last NaN) in row-major order.
    /// </summary>
    private static void MaxPool2d<T>(Tensor xt, Tensor yt, Tensor argt, Pool2dAttrs p) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int h = xt.Shape[2], w = xt.Shape[3], oh = yt.Shape[2], ow = yt.Shape[3];
        var x = NnKernels.Buf<T>(xt);
        var y = NnKernels.Buf<T>(yt);
        var arg = NnKernels.Buf<int>(argt);
        int kh = p.KernelH, kw = p.KernelW, sh = p.StrideH, sw = p.StrideW, ph = p.PadH, pw = p.PadW;
        NnKernels.For(Planes(xt), (long)oh * ow * (kh + kw), (_, p0, p1) =>
        {
            var rowMax = new T[h * ow];     // (H, OW): each input row's max over each output column's window
            var rowArg = new int[h * ow];   // (H, OW): its column
            for (int plane = p0; plane < p1; plane++)
            {
                var xp = new ReadOnlySpan<T>(x.Data, x.Offset + plane * h * w, h * w);    // (H, W)
                var yp = new Span<T>(y.Data, y.Offset + plane * oh * ow, oh * ow);        // (OH, OW)
                var ap = new Span<int>(arg.Data, arg.Offset + plane * oh * ow, oh * ow);  // (OH, OW)
                for (int ih = 0; ih < h; ih++)
                {
                    var row = xp.Slice(ih * w, w);
                    for (int j = 0; j < ow; j++)
                    {
                        int w0 = Math.Max(j * sw - pw, 0), w1 = Math.Min(j * sw - pw + kw, w);
                        int best = w0;
                        T max = T.NegativeInfinity;
                        for (int iw = w0; iw < w1; iw++)
                        {
                            // PyTorch's rule, written without short-circuit so the JIT can use conditional moves
                            // (random data makes this branch unpredictable).
                            T v = row[iw];
                            bool take = (v > max) | T.IsNaN(v);
                            max = take ? v : max;
                            best = take ? iw : best;
                        }
                        rowMax[ih * ow + j] = max;
                        rowArg[ih * ow + j] = best;
                    }
                }
                for (int i = 0; i < oh; i++)
                {
                    int h0 = Math.Max(i * sh - ph, 0), h1 = Math.Min(i * sh - ph + kh, h);
                    var yRow = yp.Slice(i * ow, ow);
                    var aRow = ap.Slice(i * ow, ow);
                    for (int j = 0; j < ow; j++)
                    {
                        yRow[j] = rowMax[h0 * ow + j];
                        aRow[j] = h0 * w + rowArg[h0 * ow + j];
                    }
                    for (int ih = h0 + 1; ih < h1; ih++)
                    {
                        var m = rowMax.AsSpan(ih * ow, ow);
                        var c = rowArg.AsSpan(ih * ow, ow);
                        for (int j = 0; j < ow; j++)
                        {
                            T v = m[j];
                            bool take = (v > yRow[j]) | T.IsNaN(v);
                            yRow[j] = take ? v : yRow[j];
                            aRow[j] = take ? ih * w + c[j] : aRow[j];
                        }
                    }
                }
            }
        });
    }

    public static void MaxPool2dBackward(Tensor dy, Tensor argmax, Tensor dx, Pool2dAttrs p)
    {
        switch (dy.DType)
        {
            case DType.F32: MaxPool2dBackward<float>(dy, argmax, dx); break;
            case DType.F64: MaxPool2dBackward<double>(dy, argmax, dx); break;
            default: throw NnKernels.Unsupported("MaxPool2dBackward", dy);
        }
    }

    /// <summary>dx = 0, then dx[plane, argmax[plane, o]] += dy[plane, o] (overlapping windows may pick the same input).</summary>
    private static void MaxPool2dBackward<T>(Tensor dyt, Tensor argt, Tensor dxt) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int hw = dxt.Shape[2] * dxt.Shape[3], ohw = dyt.Shape[2] * dyt.Shape[3];
        var dy = NnKernels.Buf<T>(dyt);
        var arg = NnKernels.Buf<int>(argt);
        var dx = NnKernels.Buf<T>(dxt);
        NnKernels.For(Planes(dxt), hw + ohw, (_, p0, p1) =>
        {
            for (int plane = p0; plane < p1; plane++)
            {
                var dxp = new Span<T>(dx.Data, dx.Offset + plane * hw, hw); // (H, W)
                dxp.Clear();
                for (int o = 0; o < ohw; o++)
                {
                    int a = arg.Data[arg.Offset + plane * ohw + o];
                    if ((uint)a >= (uint)hw)
                        throw new IndexOutOfRangeException($"MaxPool2dBackward: argmax {a} is out of range for an input plane of {hw} elements");
                    dxp[a] += dy.Data[dy.Offset + plane * ohw + o];
                }
            }
        });
    }

    public static void AvgPool2d(Tensor x, Tensor y, Pool2dAttrs p)
    {
        switch (x.DType)
        {
            case DType.F32: AvgPool2d<float>(x, y, p); break;
            case DType.F64: AvgPool2d<double>(x, y, p); break;
            default: throw NnKernels.Unsupported("AvgPool2d", x);
        }
    }

    /// <summary>
    /// y = sum over the window's in-bounds elements / (KH*KW): padding counts as zeros (count_include_pad).
    /// With padding at most half the kernel and no ceil mode, every window lies inside the padded input, so
    /// the divisor is always the full kernel area.
    /// </summary>
    private static void AvgPool2d<T>(Tensor xt, Tensor yt, Pool2dAttrs p) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int h = xt.Shape[2], w = xt.Shape[3], oh = yt.Shape[2], ow = yt.Shape[3];
        var x = NnKernels.Buf<T>(xt);
        var y = NnKernels.Buf<T>(yt);
        T scale = T.One / T.CreateTruncating(p.KernelH * p.KernelW);
        int kh = p.KernelH, kw = p.KernelW, sh = p.StrideH, sw = p.StrideW, ph = p.PadH, pw = p.PadW;
        NnKernels.For(Planes(xt), (long)oh * ow * kh * kw, (_, p0, p1) =>
        {
            for (int plane = p0; plane < p1; plane++)
            {
                var xp = new ReadOnlySpan<T>(x.Data, x.Offset + plane * h * w, h * w); // (H, W)
                var yp = new Span<T>(y.Data, y.Offset + plane * oh * ow, oh * ow);     // (OH, OW)
                for (int i = 0; i < oh; i++)
                {
                    int h0 = Math.Max(i * sh - ph, 0), h1 = Math.Min(i * sh - ph + kh, h);
                    for (int j = 0; j < ow; j++)
                    {
                        int w0 = Math.Max(j * sw - pw, 0), w1 = Math.Min(j * sw - pw + kw, w);
                        T sum = T.Zero;
                        for (int ih = h0; ih < h1; ih++)
                        {
                            var row = xp.Slice(ih * w, w);
                            for (int iw = w0; iw < w1; iw++) sum += row[iw];
                        }
                        yp[i * ow + j] = sum * scale;
                    }
                }
            }
        });
    }

    public static void AvgPool2dBackward(Tensor dy, Tensor dx, Pool2dAttrs p)
    {
        switch (dy.DType)
        {
            case DType.F32: AvgPool2dBackward<float>(dy, dx, p); break;
            case DType.F64: AvgPool2dBackward<double>(dy, dx, p); break;
            default: throw NnKernels.Unsupported("AvgPool2dBackward", dy);
        }
    }

    /// <summary>dx = 0, then each dy[oh, ow] / (KH*KW) is added to every in-bounds input of its window.</summary>
    private static void AvgPool2dBackward<T>(Tensor dyt, Tensor dxt, Pool2dAttrs p) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int h = dxt.Shape[2], w = dxt.Shape[3], oh = dyt.Shape[2], ow = dyt.Shape[3];
        var dy = NnKernels.Buf<T>(dyt);
        var dx = NnKernels.Buf<T>(dxt);
        T scale = T.One / T.CreateTruncating(p.KernelH * p.KernelW);
        int kh = p.KernelH, kw = p.KernelW, sh = p.StrideH, sw = p.StrideW, ph = p.PadH, pw = p.PadW;
        NnKernels.For(Planes(dxt), (long)oh * ow * kh * kw, (_, p0, p1) =>
        {
            for (int plane = p0; plane < p1; plane++)
            {
                var dxp = new Span<T>(dx.Data, dx.Offset + plane * h * w, h * w);         // (H, W)
                var dyp = new ReadOnlySpan<T>(dy.Data, dy.Offset + plane * oh * ow, oh * ow); // (OH, OW)
                dxp.Clear();
                for (int i = 0; i < oh; i++)
                {
                    int h0 = Math.Max(i * sh - ph, 0), h1 = Math.Min(i * sh - ph + kh, h);
                    for (int j = 0; j < ow; j++)
                    {
                        int w0 = Math.Max(j * sw - pw, 0), w1 = Math.Min(j * sw - pw + kw, w);
                        T g = dyp[i * ow + j] * scale;
                        for (int ih = h0; ih < h1; ih++)
                        {
                            var row = dxp.Slice(ih * w, w);
                            for (int iw = w0; iw < w1; iw++) row[iw] += g;
                        }
                    }
                }
            }
        });
    }

    public static void UpsampleNearest2d(Tensor x, Tensor y, int scale)
    {
        switch (x.DType)
        {
            case DType.F32: Upsample<float>(x, y, scale); break;
            case DType.F64: Upsample<double>(x, y, scale); break;
            default: throw NnKernels.Unsupported("UpsampleNearest2d", x);
        }
    }

    /// <summary>y[ih*s + a, iw*s + b] = x[ih, iw] for a, b in [0, s): each input row is widened once, then copied s times.</summary>
    private static void Upsample<T>(Tensor xt, Tensor yt, int s) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int h = xt.Shape[2], w = xt.Shape[3], ow = w * s;
        var x = NnKernels.Buf<T>(xt);
        var y = NnKernels.Buf<T>(yt);
        NnKernels.For(Planes(xt), (long)h * w * s * s, (_, p0, p1) =>
        {
            for (int plane = p0; plane < p1; plane++)
                for (int ih = 0; ih < h; ih++)
                {
                    var src = new ReadOnlySpan<T>(x.Data, x.Offset + (plane * h + ih) * w, w);              // (W)
                    var first = new Span<T>(y.Data, y.Offset + (plane * h * s + ih * s) * ow, ow);          // (W*s)
                    for (int iw = 0; iw < w; iw++) first.Slice(iw * s, s).Fill(src[iw]);
                    for (int a = 1; a < s; a++) first.CopyTo(new Span<T>(y.Data, y.Offset + (plane * h * s + ih * s + a) * ow, ow));
                }
        });
    }

    public static void UpsampleNearest2dBackward(Tensor dy, Tensor dx, int scale)
    {
        switch (dy.DType)
        {
            case DType.F32: UpsampleBackward<float>(dy, dx, scale); break;
            case DType.F64: UpsampleBackward<double>(dy, dx, scale); break;
            default: throw NnKernels.Unsupported("UpsampleNearest2dBackward", dy);
        }
    }

    /// <summary>dx[ih, iw] = sum of dy over the s x s block at (ih*s, iw*s): the s rows are summed first, then s columns.</summary>
    private static void UpsampleBackward<T>(Tensor dyt, Tensor dxt, int s) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int h = dxt.Shape[2], w = dxt.Shape[3], ow = w * s;
        var dy = NnKernels.Buf<T>(dyt);
        var dx = NnKernels.Buf<T>(dxt);
        NnKernels.For(Planes(dxt), (long)h * w * s * s, (_, p0, p1) =>
        {
            var rowSum = new T[ow]; // (W*s)
            for (int plane = p0; plane < p1; plane++)
                for (int ih = 0; ih < h; ih++)
                {
                    new ReadOnlySpan<T>(dy.Data, dy.Offset + (plane * h * s + ih * s) * ow, ow).CopyTo(rowSum);
                    for (int a = 1; a < s; a++)
                        TensorPrimitives.Add(rowSum, new ReadOnlySpan<T>(dy.Data, dy.Offset + (plane * h * s + ih * s + a) * ow, ow), rowSum);
                    var dst = new Span<T>(dx.Data, dx.Offset + (plane * h + ih) * w, w); // (W)
                    for (int iw = 0; iw < w; iw++)
                    {
                        T sum = rowSum[iw * s];   // s is small (2 in YOLO and the U-Net): a loop, not a Sum call per element
                        for (int b = 1; b < s; b++) sum += rowSum[iw * s + b];
                        dst[iw] = sum;
                    }
                }
        });
    }
}
