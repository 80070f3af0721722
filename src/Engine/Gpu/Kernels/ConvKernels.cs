using System.Numerics;
using System.Reflection;
using ILGPU;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>Sizes of one convolution (x (N, C, H, W), w (O, C/G, KH, KW), y (N, O, OH, OW)) and the views' offsets.</summary>
internal struct ConvGeometry
{
    public int N, C, H, W, O, KH, KW, OH, OW;
    public int SH, SW, PH, PW, DH, DW, G, Cg, Og;
    public int X, Wt, B, Y, HasBias;

    public static ConvGeometry Of(int[] x, int[] w, int[] y, Conv2dAttrs a) => new()
    {
        N = x[0],
        C = x[1],
        H = x[2],
        W = x[3],
        O = w[0],
        KH = w[2],
        KW = w[3],
        OH = y[2],
        OW = y[3],
        SH = a.StrideH,
        SW = a.StrideW,
        PH = a.PadH,
        PW = a.PadW,
        DH = a.DilationH,
        DW = a.DilationW,
        G = a.Groups,
        Cg = x[1] / a.Groups,
        Og = w[0] / a.Groups,
    };
}

/// <summary>
/// 2-D convolution (cross-correlation, NCHW, groups, stride, padding, dilation) as direct loops, one
/// thread per output element of each pass, so no pass needs atomics or an im2col buffer:
///   forward          y[n, o, oh, ow]   = b[o] + sum_{c, kh, kw} x[n, g Cg + c, oh sh - ph + kh dh, ow sw - pw + kw dw] w[o, c, kh, kw]
///   backward input   dx[n, ci, ih, iw] = sum over the (o, kh, kw) whose window reads (ih, iw) of dy[n, o, oh, ow] w[o, c, kh, kw]
///   backward weight  dw[o, c, kh, kw]  = sum_{n, oh, ow} dy[n, o, oh, ow] x[n, g Cg + c, ih, iw]
/// Correct for every geometry the CPU's im2col + GEMM handles; a tensor-core implicit GEMM is a later version.
/// </summary>
internal static class ConvKernels
{
    // ---- kernels ----

    public static void ForwardKernel<T>(ArrayView<T> x, ArrayView<T> w, ArrayView<T> bias, ArrayView<T> y, ConvGeometry g, int total)
        where T : unmanaged, INumber<T>
    {
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int ow = e % g.OW, r = e / g.OW, oh = r % g.OH;
            r /= g.OH;
            int o = r % g.O, n = r / g.O;
            int grp = o / g.Og;
            T acc = T.Zero;
            for (int c = 0; c < g.Cg; c++)
            {
                int plane = g.X + (n * g.C + grp * g.Cg + c) * g.H * g.W;
                int wBase = g.Wt + (o * g.Cg + c) * g.KH * g.KW;
                for (int kh = 0; kh < g.KH; kh++)
                {
                    int ih = oh * g.SH - g.PH + kh * g.DH;
                    if (ih < 0 || ih >= g.H) continue;
                    for (int kw = 0; kw < g.KW; kw++)
                    {
                        int iw = ow * g.SW - g.PW + kw * g.DW;
                        if (iw < 0 || iw >= g.W) continue;
                        acc += x[plane + ih * g.W + iw] * w[wBase + kh * g.KW + kw];
                    }
                }
            }
            if (g.HasBias != 0) acc += bias[g.B + o];
            y[g.Y + e] = acc;
        }
    }

    public static void BackwardInputKernel<T>(ArrayView<T> dy, ArrayView<T> w, ArrayView<T> dx, ConvGeometry g, int total)
        where T : unmanaged, INumber<T>
    {
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int iw = e % g.W, r = e / g.W, ih = r % g.H;
            r /= g.H;
            int ci = r % g.C, n = r / g.C;
            int grp = ci / g.Cg, c = ci - grp * g.Cg;
            T acc = T.Zero;
            for (int o = grp * g.Og; o < (grp + 1) * g.Og; o++)
            {
                int dyPlane = g.Y + (n * g.O + o) * g.OH * g.OW;
                int wBase = g.Wt + (o * g.Cg + c) * g.KH * g.KW;
                for (int kh = 0; kh < g.KH; kh++)
                {
                    int th = ih + g.PH - kh * g.DH; // = oh * sh
                    if (th < 0 || th % g.SH != 0 || th / g.SH >= g.OH) continue;
                    int oh = th / g.SH;
                    for (int kw = 0; kw < g.KW; kw++)
                    {
                        int tw = iw + g.PW - kw * g.DW;
                        if (tw < 0 || tw % g.SW != 0 || tw / g.SW >= g.OW) continue;
                        acc += dy[dyPlane + oh * g.OW + tw / g.SW] * w[wBase + kh * g.KW + kw];
                    }
                }
            }
            dx[g.X + e] = acc;
        }
    }

    public static void BackwardWeightKernel<T>(ArrayView<T> dy, ArrayView<T> x, ArrayView<T> dw, ConvGeometry g, int total)
        where T : unmanaged, INumber<T>
    {
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int kw = e % g.KW, r = e / g.KW, kh = r % g.KH;
            r /= g.KH;
            int c = r % g.Cg, o = r / g.Cg;
            int grp = o / g.Og;
            T acc = T.Zero;
            for (int n = 0; n < g.N; n++)
            {
                int dyPlane = g.Y + (n * g.O + o) * g.OH * g.OW;
                int xPlane = g.X + (n * g.C + grp * g.Cg + c) * g.H * g.W;
                for (int oh = 0; oh < g.OH; oh++)
                {
                    int ih = oh * g.SH - g.PH + kh * g.DH;
                    if (ih < 0 || ih >= g.H) continue;
                    for (int ow = 0; ow < g.OW; ow++)
                    {
                        int iw = ow * g.SW - g.PW + kw * g.DW;
                        if (iw < 0 || iw >= g.W) continue;
                        acc += dy[dyPlane + oh * g.OW + ow] * x[xPlane + ih * g.W + iw];
                    }
                }
            }
            dw[g.Wt + e] = acc;
        }
    }

    // ---- launchers ----

    private static object V(Tensor t) => CopyKernels.View((GpuStorage)t.Storage);

    private static void Check(string op, params Tensor[] ts)
    {
        foreach (var t in ts)
        {
            if (t.DType != ts[0].DType) throw new ArgumentException($"{op}: {t.Describe()} must have the dtype of {ts[0].Describe()}");
            if (!t.IsContiguous) throw new ArgumentException($"{op}: the GPU kernel needs dense inputs, got {t.Describe()}");
        }
        if (ts[0].DType is not (DType.F32 or DType.F64))
            throw new NotSupportedException($"the GPU backend has no {op} kernel for dtype {ts[0].DType} (F32 and F64 only)");
    }

    public static void Conv2d(GpuBackend b, Tensor x, Tensor w, Tensor bias, Tensor y, Conv2dAttrs a)
    {
        Check("Conv2d", x, w, bias, y);
        var g = ConvGeometry.Of(x.Shape, w.Shape, y.Shape, a);
        g.X = x.Offset;
        g.Wt = w.Offset;
        g.B = bias.Offset;
        g.Y = y.Offset;
        g.HasBias = bias.Numel > 0 ? 1 : 0;
        if (y.Numel == 0) return;
        b.Launch(Spec(x.DType, 0), b.Grid(y.Numel), V(x), V(w), V(bias), V(y), g, y.Numel);
    }

    public static void BackwardInput(GpuBackend b, Tensor dy, Tensor w, Tensor dx, Conv2dAttrs a)
    {
        Check("Conv2dBackwardInput", dy, w, dx);
        var g = ConvGeometry.Of(dx.Shape, w.Shape, dy.Shape, a);
        g.Y = dy.Offset;
        g.Wt = w.Offset;
        g.X = dx.Offset;
        if (dx.Numel == 0) return;
        b.Launch(Spec(dy.DType, 1), b.Grid(dx.Numel), V(dy), V(w), V(dx), g, dx.Numel);
    }

    public static void BackwardWeight(GpuBackend b, Tensor dy, Tensor x, Tensor dw, Conv2dAttrs a)
    {
        Check("Conv2dBackwardWeight", dy, x, dw);
        var g = ConvGeometry.Of(x.Shape, dw.Shape, dy.Shape, a);
        g.Y = dy.Offset;
        g.X = x.Offset;
        g.Wt = dw.Offset;
        if (dw.Numel == 0) return;
        b.Launch(Spec(dy.DType, 2), b.Grid(dw.Numel), V(dy), V(x), V(dw), g, dw.Numel);
    }

    // ---- specs ----

    private static KernelSpec Spec(DType t, int pass) => (t, pass) switch
    {
        (DType.F32, 0) => new("Conv2d_F32", Fwd<float>()),
        (DType.F64, 0) => new("Conv2d_F64", Fwd<double>()),
        (DType.F32, 1) => new("Conv2dBackwardInput_F32", BwdIn<float>()),
        (DType.F64, 1) => new("Conv2dBackwardInput_F64", BwdIn<double>()),
        (DType.F32, _) => new("Conv2dBackwardWeight_F32", BwdW<float>()),
        _ => new("Conv2dBackwardWeight_F64", BwdW<double>()),
    };

    private static MethodInfo Fwd<T>() where T : unmanaged, INumber<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ConvGeometry, int>)ForwardKernel<T>).Method;

    private static MethodInfo BwdIn<T>() where T : unmanaged, INumber<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ConvGeometry, int>)BackwardInputKernel<T>).Method;

    private static MethodInfo BwdW<T>() where T : unmanaged, INumber<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ConvGeometry, int>)BackwardWeightKernel<T>).Method;

    public static IEnumerable<KernelSpec> Specs()
    {
        foreach (var t in new[] { DType.F32, DType.F64 })
            for (int pass = 0; pass < 3; pass++)
                yield return Spec(t, pass);
    }
}
