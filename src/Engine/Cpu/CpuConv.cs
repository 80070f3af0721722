using System.Numerics;
using System.Numerics.Tensors;

namespace ManagedTensor.Cpu;

/// <summary>
/// 2-D convolution (cross-correlation, NCHW) as im2col + GEMM, per image and per group:
///   col (Cg*KH*KW, OH*OW) = im2col(x[n, group])            one column per output pixel
///   y[n, group] (Og, OH*OW) = w[group] (Og, Cg*KH*KW) @ col
/// Backward input:  dcol = w[group]^T @ dy[n, group], then col2im adds dcol back into dx.
/// Backward weight: dw[group] += dy[n, group] @ col^T, summed over the batch.
/// Images run in parallel in fixed chunks, each chunk with one column buffer reused for all its images,
/// unless the per-image GEMM is big enough for Gemm to thread it (see ImageChunks).
/// A 1x1 kernel with stride 1 and no padding needs no im2col: the image itself is the column matrix.
/// This is the path of F64 and of dilated convs, and the reference the direct float path (CpuConvDirect, which
/// reads the image in place through the micro-kernels) is tested against.
/// </summary>
internal static class CpuConv
{
    /// <summary>Sizes of one convolution, read from x (N, C, H, W), w (O, C/g, KH, KW) and the output size.</summary>
    internal readonly record struct Geometry(int N, int C, int H, int W, int O, int KH, int KW, int OH, int OW, Conv2dAttrs A)
    {
        public int G => A.Groups;
        public int Cg => C / G;                 // input channels per group
        public int Og => O / G;                 // output channels per group
        public int K => Cg * KH * KW;           // rows of the column matrix
        public int L => OH * OW;                // output pixels = columns of the column matrix
        public bool Pointwise => KH == 1 && KW == 1 && A.StrideH == 1 && A.StrideW == 1 && A.PadH == 0 && A.PadW == 0;

        public static Geometry Of(int[] x, int[] w, int[] y, Conv2dAttrs a) => new(x[0], x[1], x[2], x[3], w[0], w[2], w[3], y[2], y[3], a);
    }

    /// <summary>Multiply-adds above which the float GEMM spreads one product over all cores by itself.</summary>
    private const long GemmThreadedWork = 96 * 96 * 96;

    /// <summary>
    /// How many chunks of images run side by side: one (images in sequence) when each image's float GEMM
    /// is large enough to use every core itself, since nesting both levels only oversubscribes the cores;
    /// otherwise the fixed partition of the batch. The double GEMM is single-threaded, so F64 always
    /// splits the batch.
    /// </summary>
    private static int ImageChunks<T>(Geometry g)
        => typeof(T) == typeof(float) && (long)g.Og * g.K * g.L >= GemmThreadedWork ? 1 : NnKernels.ChunkCount(g.N, 2L * g.O * g.K * g.L);

    public static void Conv2d(Tensor x, Tensor w, Tensor b, Tensor y, Conv2dAttrs a) => Conv2d(x, w, b, y, a, Sgemm.Best);

    /// <summary>
    /// y = silu(conv(x, w) + b) (the op Conv2dSilu, Ops/ConvSiluOps.cs): the direct path applies SiLU to each block of
    /// output rows as it leaves the L2-resident C block; the im2col path runs SiLU over each image's output after its GEMM.
    /// </summary>
    public static void Conv2dSilu(Tensor x, Tensor w, Tensor b, Tensor y, Conv2dAttrs a) => Conv2d(x, w, b, y, a, Sgemm.Best, silu: true);

    /// <summary>
    /// The float convolutions with dilation 1 take the direct path of CpuConvDirect with the micro-kernels of
    /// <paramref name="direct"/>; everything else (and direct = Scalar) takes im2col + GEMM.
    /// Tests pass the ISA to compare the two paths and each micro-kernel.
    /// </summary>
    internal static void Conv2d(Tensor x, Tensor w, Tensor b, Tensor y, Conv2dAttrs a, SgemmIsa direct, bool silu = false)
    {
        NnKernels.CheckSameDType("Conv2d", x, w, b);
        var g = Geometry.Of(x.Shape, w.Shape, y.Shape, a);
        if (x.DType == DType.F32 && CpuConvDirect.Applies(g, direct))
        {
            CpuConvDirect.Forward(x, w, b, y, g, direct, silu);
            return;
        }
        switch (x.DType)
        {
            case DType.F32: Forward<float>(x, w, b, y, g, silu); break;
            case DType.F64: Forward<double>(x, w, b, y, g, silu); break;
            default: throw NnKernels.Unsupported("Conv2d", x);
        }
    }

    public static void BackwardInput(Tensor dy, Tensor w, Tensor dx, Conv2dAttrs a) => BackwardInput(dy, w, dx, a, Sgemm.Best);

    internal static void BackwardInput(Tensor dy, Tensor w, Tensor dx, Conv2dAttrs a, SgemmIsa direct)
    {
        NnKernels.CheckSameDType("Conv2dBackwardInput", dy, w);
        var g = Geometry.Of(dx.Shape, w.Shape, dy.Shape, a);
        if (dy.DType == DType.F32 && CpuConvDirect.AppliesBackwardInput(g, direct))
        {
            CpuConvDirect.BackwardInput(dy, w, dx, g, direct);
            return;
        }
        switch (dy.DType)
        {
            case DType.F32: BackwardInput<float>(dy, w, dx, g); break;
            case DType.F64: BackwardInput<double>(dy, w, dx, g); break;
            default: throw NnKernels.Unsupported("Conv2dBackwardInput", dy);
        }
    }

    public static void BackwardWeight(Tensor dy, Tensor x, Tensor dw, Conv2dAttrs a) => BackwardWeight(dy, x, dw, a, Sgemm.Best);

    internal static void BackwardWeight(Tensor dy, Tensor x, Tensor dw, Conv2dAttrs a, SgemmIsa direct)
    {
        NnKernels.CheckSameDType("Conv2dBackwardWeight", dy, x);
        var g = Geometry.Of(x.Shape, dw.Shape, dy.Shape, a);
        if (dy.DType == DType.F32 && CpuConvDirect.Applies(g, direct))
        {
            CpuConvDirect.BackwardWeight(dy, x, dw, g, direct);
            return;
        }
        switch (dy.DType)
        {
            case DType.F32: BackwardWeight<float>(dy, x, dw, g); break;
            case DType.F64: BackwardWeight<double>(dy, x, dw, g); break;
            default: throw NnKernels.Unsupported("Conv2dBackwardWeight", dy);
        }
    }

    private static void Forward<T>(Tensor xt, Tensor wt, Tensor bt, Tensor yt, Geometry g, bool silu) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var x = NnKernels.Buf<T>(xt);
        var w = NnKernels.Buf<T>(wt);
        var y = NnKernels.Buf<T>(yt);
        T[]? bias = bt.Numel > 0 ? bt.ElementSpan<T>().ToArray() : null; // (O)
        int chunks = ImageChunks<T>(g);
        NnKernels.ForChunks(chunks, g.N, (_, n0, n1) =>
        {
            using var colBuf = new Scratch<T>(g.Pointwise ? 0 : g.K * g.L);
            var col = g.Pointwise ? null : colBuf.Array; // (Cg*KH*KW, OH*OW)
            for (int n = n0; n < n1; n++)
            {
                for (int grp = 0; grp < g.G; grp++)
                {
                    int xo = x.Offset + (n * g.C + grp * g.Cg) * g.H * g.W;
                    ReadOnlySpan<T> cols = new(x.Data, xo, g.Cg * g.H * g.W); // (Cg, H, W): the columns of a pointwise conv
                    if (col is not null)
                    {
                        Im2Col(x.Data, xo, col, g, parallel: chunks == 1);
                        cols = colBuf.Span;
                    }
                    var wg = new ReadOnlySpan<T>(w.Data, w.Offset + grp * g.Og * g.K, g.Og * g.K);                // (Og, K)
                    var yg = new Span<T>(y.Data, y.Offset + (n * g.O + grp * g.Og) * g.L, g.Og * g.L);            // (Og, L)
                    NnKernels.RunGemm(false, false, g.Og, g.L, g.K, 1.0, wg, g.K, cols, g.L, 0.0, yg, g.L);
                }
                if (bias is not null)
                    for (int o = 0; o < g.O; o++)
                    {
                        var yo = new Span<T>(y.Data, y.Offset + (n * g.O + o) * g.L, g.L); // (OH*OW)
                        TensorPrimitives.Add(yo, bias[o], yo);
                    }
                if (silu) NormSilu.AffineSilu<T>(new Span<T>(y.Data, y.Offset + n * g.O * g.L, g.O * g.L), T.One, T.Zero, new Span<T>(y.Data, y.Offset + n * g.O * g.L, g.O * g.L));
            }
        });
    }

    private static void BackwardInput<T>(Tensor dyt, Tensor wt, Tensor dxt, Geometry g) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var dy = NnKernels.Buf<T>(dyt);
        var w = NnKernels.Buf<T>(wt);
        var dx = NnKernels.Buf<T>(dxt);
        int chunks = ImageChunks<T>(g);
        NnKernels.ForChunks(chunks, g.N, (_, n0, n1) =>
        {
            using var colBuf = new Scratch<T>(g.Pointwise ? 0 : g.K * g.L);
            var col = g.Pointwise ? null : colBuf.Array; // (Cg*KH*KW, OH*OW)
            for (int n = n0; n < n1; n++)
            {
                for (int grp = 0; grp < g.G; grp++)
                {
                    int dxo = dx.Offset + (n * g.C + grp * g.Cg) * g.H * g.W;
                    var dxg = new Span<T>(dx.Data, dxo, g.Cg * g.H * g.W);                                             // (Cg, H, W)
                    var wg = new ReadOnlySpan<T>(w.Data, w.Offset + grp * g.Og * g.K, g.Og * g.K);                    // (Og, K)
                    var dyg = new ReadOnlySpan<T>(dy.Data, dy.Offset + (n * g.O + grp * g.Og) * g.L, g.Og * g.L);     // (Og, L)
                    // dcol (K, L) = wg^T (K, Og) @ dyg (Og, L); a pointwise conv's dcol is dx itself.
                    Span<T> dcol = col is null ? dxg : colBuf.Span;
                    NnKernels.RunGemm(true, false, g.K, g.L, g.Og, 1.0, wg, g.K, dyg, g.L, 0.0, dcol, g.L);
                    if (col is not null) Col2Im(col, dx.Data, dxo, g, parallel: chunks == 1);
                }
            }
        });
    }

    private static void BackwardWeight<T>(Tensor dyt, Tensor xt, Tensor dwt, Geometry g) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var dy = NnKernels.Buf<T>(dyt);
        var x = NnKernels.Buf<T>(xt);
        int wsize = g.O * g.K;
        int chunks = ImageChunks<T>(g);
        using var partialBuf = new Scratch<T>(chunks * wsize); // (chunks, O, Cg*KH*KW): one dw per chunk, added in chunk order
        partialBuf.Clear();
        var partial = partialBuf.Array;
        NnKernels.ForChunks(chunks, g.N, (chunk, n0, n1) =>
        {
            using var colBuf = new Scratch<T>(g.Pointwise ? 0 : g.K * g.L);
            var col = g.Pointwise ? null : colBuf.Array; // (Cg*KH*KW, OH*OW)
            for (int n = n0; n < n1; n++)
            {
                for (int grp = 0; grp < g.G; grp++)
                {
                    int xo = x.Offset + (n * g.C + grp * g.Cg) * g.H * g.W;
                    ReadOnlySpan<T> cols = new(x.Data, xo, g.Cg * g.H * g.W); // (Cg, H, W): the columns of a pointwise conv
                    if (col is not null)
                    {
                        Im2Col(x.Data, xo, col, g, parallel: chunks == 1);
                        cols = colBuf.Span;
                    }
                    var dyg = new ReadOnlySpan<T>(dy.Data, dy.Offset + (n * g.O + grp * g.Og) * g.L, g.Og * g.L); // (Og, L)
                    var dwg = new Span<T>(partial, chunk * wsize + grp * g.Og * g.K, g.Og * g.K);                 // (Og, K)
                    // dwg (Og, K) += dyg (Og, L) @ cols^T (L, K)
                    NnKernels.RunGemm(false, true, g.Og, g.K, g.L, 1.0, dyg, g.L, cols, g.L, n == n0 ? 0.0 : 1.0, dwg, g.K);
                }
            }
        });
        var dw = dwt.ElementSpan<T>();
        partial.AsSpan(0, wsize).CopyTo(dw);
        for (int k = 1; k < chunks; k++) TensorPrimitives.Add(dw, partial.AsSpan(k * wsize, wsize), dw);
    }

    /// <summary>
    /// For kernel offset k (or output index o) along one axis: the output positions o in [lo, hi) whose input
    /// position i = o * stride - pad + k * dilation lies in [0, size).
    /// </summary>
    private static (int Lo, int Hi) ValidRange(int outSize, int size, int stride, int pad, int kOffset)
    {
        int start = kOffset - pad; // input position of o = 0
        int lo = start >= 0 ? 0 : Math.Min(outSize, (-start + stride - 1) / stride);
        int hi = start >= size ? 0 : Math.Min(outSize, (size - 1 - start) / stride + 1);
        return (lo, Math.Max(lo, hi));
    }

    /// <summary>
    /// Runs body(c0, c1) over the input channels of one image and group, split over threads when
    /// <paramref name="parallel"/> (images in sequence): channel c owns rows c*KH*KW .. of the column
    /// matrix and plane c of the image, so the threads never touch the same memory.
    /// </summary>
    private static void ForChannels(Geometry g, bool parallel, Action<int, int> body)
    {
        if (parallel) NnKernels.For(g.Cg, (long)g.KH * g.KW * g.L, (_, c0, c1) => body(c0, c1));
        else body(0, g.Cg);
    }

    /// <summary>col[(c*KH + kh)*KW + kw, oh*OW + ow] = x[c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw] (0 in the padding); x (Cg, H, W) starts at xOffset.</summary>
    private static void Im2Col<T>(T[] xData, int xOffset, T[] colData, Geometry g, bool parallel) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var a = g.A;
        ForChannels(g, parallel, (c0, c1) =>
        {
            var x = new ReadOnlySpan<T>(xData, xOffset, g.Cg * g.H * g.W); // (Cg, H, W)
            var col = colData.AsSpan(0, g.K * g.L);                          // (Cg*KH*KW, OH*OW)
            for (int c = c0; c < c1; c++)
                for (int kh = 0; kh < g.KH; kh++)
                {
                    var (ohLo, ohHi) = ValidRange(g.OH, g.H, a.StrideH, a.PadH, kh * a.DilationH);
                    for (int kw = 0; kw < g.KW; kw++)
                    {
                        var (owLo, owHi) = ValidRange(g.OW, g.W, a.StrideW, a.PadW, kw * a.DilationW);
                        var row = col.Slice(((c * g.KH + kh) * g.KW + kw) * g.L, g.L); // (OH, OW)
                        row[..(ohLo * g.OW)].Clear();
                        row[(ohHi * g.OW)..].Clear();
                        for (int oh = ohLo; oh < ohHi; oh++)
                        {
                            var dst = row.Slice(oh * g.OW, g.OW);
                            dst[..owLo].Clear();
                            dst[owHi..].Clear();
                            int ih = oh * a.StrideH - a.PadH + kh * a.DilationH;
                            int iw0 = owLo * a.StrideW - a.PadW + kw * a.DilationW;
                            var src = x.Slice((c * g.H + ih) * g.W, g.W);
                            if (a.StrideW == 1) src.Slice(iw0, owHi - owLo).CopyTo(dst[owLo..owHi]);
                            else for (int ow = owLo, iw = iw0; ow < owHi; ow++, iw += a.StrideW) dst[ow] = src[iw];
                        }
                    }
                }
        });
    }

    /// <summary>The adjoint of <see cref="Im2Col{T}"/>: dx = 0, then each col entry is added to the input position it was read from; dx (Cg, H, W) starts at dxOffset.</summary>
    private static void Col2Im<T>(T[] colData, T[] dxData, int dxOffset, Geometry g, bool parallel) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var a = g.A;
        ForChannels(g, parallel, (c0, c1) =>
        {
            var col = new ReadOnlySpan<T>(colData, 0, g.K * g.L); // (Cg*KH*KW, OH*OW)
            var dx = new Span<T>(dxData, dxOffset, g.Cg * g.H * g.W); // (Cg, H, W)
            dx.Slice(c0 * g.H * g.W, (c1 - c0) * g.H * g.W).Clear();
            for (int c = c0; c < c1; c++)
                for (int kh = 0; kh < g.KH; kh++)
                {
                    var (ohLo, ohHi) = ValidRange(g.OH, g.H, a.StrideH, a.PadH, kh * a.DilationH);
                    for (int kw = 0; kw < g.KW; kw++)
                    {
                        var (owLo, owHi) = ValidRange(g.OW, g.W, a.StrideW, a.PadW, kw * a.DilationW);
                        var row = col.Slice(((c * g.KH + kh) * g.KW + kw) * g.L, g.L); // (OH, OW)
                        for (int oh = ohLo; oh < ohHi; oh++)
                        {
                            var src = row.Slice(oh * g.OW, g.OW);
                            int ih = oh * a.StrideH - a.PadH + kh * a.DilationH;
                            int iw0 = owLo * a.StrideW - a.PadW + kw * a.DilationW;
                            var dst = dx.Slice((c * g.H + ih) * g.W, g.W);
                            if (a.StrideW == 1) TensorPrimitives.Add(dst.Slice(iw0, owHi - owLo), src[owLo..owHi], dst.Slice(iw0, owHi - owLo));
                            else for (int ow = owLo, iw = iw0; ow < owHi; ow++, iw += a.StrideW) dst[iw] += src[ow];
                        }
                    }
                }
        });
    }
}
