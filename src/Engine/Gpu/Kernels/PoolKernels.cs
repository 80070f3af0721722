using System.Numerics;
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>Sizes of a pooling (or upsampling) over NCHW planes and the views' offsets.</summary>
internal struct PoolGeometry
{
    public int Planes, H, W, OH, OW, KH, KW, SH, SW, PH, PW, Scale;
    public int X, Y;
}

/// <summary>
/// Max / average pooling and nearest upsampling, with their backward passes, one thread per element.
/// Window (oh, ow) covers input rows oh sh - ph .. + KH - 1 and columns ow sw - pw .. + KW - 1.
/// Average-pool and upsample backward are written per input element (summing the outputs that read it,
/// in the CPU's order), so they need no atomics; max-pool backward adds dy at argmax atomically
/// (overlapping windows may pick the same input).
/// </summary>
internal static class PoolKernels
{
    // ---- kernels ----

    /// <summary>y = max over the window's in-bounds inputs (padding is -inf), argmax = ih W + iw of the first maximum; a NaN wins (the last NaN).</summary>
    public static void MaxPoolKernel<T>(ArrayView<T> x, ArrayView<T> y, ArrayView<int> argmax, PoolGeometry g, int argOffset, int total)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int j = e % g.OW, r = e / g.OW, i = r % g.OH, plane = r / g.OH;
            int h0 = Math.Max(i * g.SH - g.PH, 0), h1 = Math.Min(i * g.SH - g.PH + g.KH, g.H);
            int w0 = Math.Max(j * g.SW - g.PW, 0), w1 = Math.Min(j * g.SW - g.PW + g.KW, g.W);
            int xb = g.X + plane * g.H * g.W;
            int best = h0 * g.W + w0;
            T max = T.NegativeInfinity;
            for (int ih = h0; ih < h1; ih++)
                for (int iw = w0; iw < w1; iw++)
                {
                    T v = x[xb + ih * g.W + iw];
                    if (v > max || T.IsNaN(v))
                    {
                        max = v;
                        best = ih * g.W + iw;
                    }
                }
            y[g.Y + e] = max;
            argmax[argOffset + e] = best;
        }
    }

    /// <summary>dx[plane, argmax] += dy (dx zeroed first by the launcher).</summary>
    public static void MaxPoolBackwardKernel<T, TA>(ArrayView<T> dy, ArrayView<int> argmax, ArrayView<T> dx, ArrayView<int> status, PoolGeometry g, int argOffset, int total)
        where T : unmanaged where TA : struct, IAtomicAdd<T>
    {
        TA atomic = default;
        int hw = g.H * g.W, ohw = g.OH * g.OW;
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int a = argmax[argOffset + e];
            if (a < 0 || a >= hw)
            {
                KernelStatus.Report(status, Op.MaxPool2dBackward, a, hw);
                continue;
            }
            atomic.Add(ref dx[g.X + e / ohw * hw + a], dy[g.Y + e]);
        }
    }

    /// <summary>y = sum over the window's in-bounds inputs / (KH KW): padding counts as zeros (count_include_pad).</summary>
    public static void AvgPoolKernel<T>(ArrayView<T> x, ArrayView<T> y, PoolGeometry g, T scale, int total)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int j = e % g.OW, r = e / g.OW, i = r % g.OH, plane = r / g.OH;
            int h0 = Math.Max(i * g.SH - g.PH, 0), h1 = Math.Min(i * g.SH - g.PH + g.KH, g.H);
            int w0 = Math.Max(j * g.SW - g.PW, 0), w1 = Math.Min(j * g.SW - g.PW + g.KW, g.W);
            int xb = g.X + plane * g.H * g.W;
            T sum = T.Zero;
            for (int ih = h0; ih < h1; ih++)
                for (int iw = w0; iw < w1; iw++) sum += x[xb + ih * g.W + iw];
            y[g.Y + e] = sum * scale;
        }
    }

    /// <summary>dx[ih, iw] = sum over the windows containing (ih, iw) of dy / (KH KW), windows in row-major order.</summary>
    public static void AvgPoolBackwardKernel<T>(ArrayView<T> dy, ArrayView<T> dx, PoolGeometry g, T scale, int total)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int iw = e % g.W, r = e / g.W, ih = r % g.H, plane = r / g.H;
            // Windows i with i sh - ph <= ih < i sh - ph + KH.
            int i0 = Math.Max(CeilDiv(ih + g.PH - g.KH + 1, g.SH), 0), i1 = Math.Min((ih + g.PH) / g.SH, g.OH - 1);
            int j0 = Math.Max(CeilDiv(iw + g.PW - g.KW + 1, g.SW), 0), j1 = Math.Min((iw + g.PW) / g.SW, g.OW - 1);
            int yb = g.Y + plane * g.OH * g.OW;
            T acc = T.Zero;
            for (int i = i0; i <= i1; i++)
                for (int j = j0; j <= j1; j++) acc += dy[yb + i * g.OW + j] * scale;
            dx[g.X + e] = acc;
        }
    }

    private static int CeilDiv(int a, int b) => a >= 0 ? (a + b - 1) / b : -(-a / b);

    /// <summary>y[ih s + a, iw s + b] = x[ih, iw].</summary>
    public static void UpsampleKernel<T>(ArrayView<T> x, ArrayView<T> y, PoolGeometry g, int total) where T : unmanaged
    {
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int ow = e % g.OW, r = e / g.OW, oh = r % g.OH, plane = r / g.OH;
            y[g.Y + e] = x[g.X + (plane * g.H + oh / g.Scale) * g.W + ow / g.Scale];
        }
    }

    /// <summary>dx[ih, iw] = sum of the s x s block of dy at (ih s, iw s), rows of the block first (as the CPU).</summary>
    public static void UpsampleBackwardKernel<T>(ArrayView<T> dy, ArrayView<T> dx, PoolGeometry g, int total) where T : unmanaged, INumber<T>
    {
        int step = Grid.DimX * Group.DimX;
        int s = g.Scale;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int iw = e % g.W, r = e / g.W, ih = r % g.H, plane = r / g.H;
            int yb = g.Y + (plane * g.OH + ih * s) * g.OW + iw * s;
            T acc = T.Zero;
            for (int b = 0; b < s; b++)
            {
                T column = dy[yb + b];
                for (int a = 1; a < s; a++) column += dy[yb + a * g.OW + b];
                acc += column;
            }
            dx[g.X + e] = acc;
        }
    }

    // ---- launchers ----

    private static object V(Tensor t) => CopyKernels.View((GpuStorage)t.Storage);

    private static void Check(string op, params Tensor[] ts)
    {
        if (ts[0].DType is not (DType.F32 or DType.F64))
            throw new NotSupportedException($"the GPU backend has no {op} kernel for dtype {ts[0].DType} (F32 and F64 only)");
        foreach (var t in ts)
            if (!t.IsContiguous) throw new ArgumentException($"{op}: the GPU kernel needs dense inputs, got {t.Describe()}");
    }

    private static PoolGeometry Geometry(Tensor x, Tensor y, Pool2dAttrs? p, int scale) => new()
    {
        Planes = x.Shape[0] * x.Shape[1],
        H = x.Shape[2],
        W = x.Shape[3],
        OH = y.Shape[2],
        OW = y.Shape[3],
        KH = p?.KernelH ?? 0,
        KW = p?.KernelW ?? 0,
        SH = p?.StrideH ?? 1,
        SW = p?.StrideW ?? 1,
        PH = p?.PadH ?? 0,
        PW = p?.PadW ?? 0,
        Scale = scale,
        X = x.Offset,
        Y = y.Offset,
    };

    private static object Scale(DType t, int kh, int kw) => t == DType.F32 ? (object)(1f / (kh * kw)) : 1.0 / (kh * kw);

    public static void MaxPool2d(GpuBackend b, Tensor x, Tensor y, Tensor argmax, Pool2dAttrs p)
    {
        Check("MaxPool2d", x);
        if (y.Numel == 0) return;
        b.Launch(Spec("MaxPool2d", x.DType), b.Grid(y.Numel), V(x), V(y), ((GpuStorage)argmax.Storage).View<int>(), Geometry(x, y, p, 1), argmax.Offset, y.Numel);
    }

    public static void MaxPool2dBackward(GpuBackend b, Tensor dy, Tensor argmax, Tensor dx)
    {
        Check("MaxPool2dBackward", dy, argmax, dx);
        if (dx.Numel == 0) return;
        var ds = (GpuStorage)dx.Storage;
        int size = dx.DType.SizeOf();
        ds.Bytes.SubView((long)dx.Offset * size, (long)dx.Numel * size).MemSetToZero(b.Stream);
        if (dy.Numel == 0) return;
        b.Launch(Spec("MaxPool2dBackward", dy.DType), b.Grid(dy.Numel), V(dy), ((GpuStorage)argmax.Storage).View<int>(), V(dx), b.Status,
            Geometry(dx, dy, null, 1), argmax.Offset, dy.Numel);
    }

    public static void AvgPool2d(GpuBackend b, Tensor x, Tensor y, Pool2dAttrs p)
    {
        Check("AvgPool2d", x);
        if (y.Numel == 0) return;
        b.Launch(Spec("AvgPool2d", x.DType), b.Grid(y.Numel), V(x), V(y), Geometry(x, y, p, 1), Scale(x.DType, p.KernelH, p.KernelW), y.Numel);
    }

    public static void AvgPool2dBackward(GpuBackend b, Tensor dy, Tensor dx, Pool2dAttrs p)
    {
        Check("AvgPool2dBackward", dy);
        if (dx.Numel == 0) return;
        var g = Geometry(dx, dy, p, 1);
        (g.X, g.Y) = (dx.Offset, dy.Offset);
        b.Launch(Spec("AvgPool2dBackward", dy.DType), b.Grid(dx.Numel), V(dy), V(dx), g, Scale(dy.DType, p.KernelH, p.KernelW), dx.Numel);
    }

    public static void Upsample(GpuBackend b, Tensor x, Tensor y, int scale)
    {
        Check("UpsampleNearest2d", x);
        if (y.Numel == 0) return;
        b.Launch(Spec("UpsampleNearest2d", x.DType), b.Grid(y.Numel), V(x), V(y), Geometry(x, y, null, scale), y.Numel);
    }

    public static void UpsampleBackward(GpuBackend b, Tensor dy, Tensor dx, int scale)
    {
        Check("UpsampleNearest2dBackward", dy);
        if (dx.Numel == 0) return;
        var g = Geometry(dx, dy, null, scale);
        b.Launch(Spec("UpsampleNearest2dBackward", dy.DType), b.Grid(dx.Numel), V(dy), V(dx), g, dx.Numel);
    }

    // ---- specs ----

    private static readonly string[] Ops = ["MaxPool2d", "MaxPool2dBackward", "AvgPool2d", "AvgPool2dBackward", "UpsampleNearest2d", "UpsampleNearest2dBackward"];

    private static KernelSpec Spec(string op, DType t) => new($"{op}_{t}", t == DType.F32 ? Method<float, AtomicF32>(op) : Method<double, AtomicF64>(op));

    private static MethodInfo Method<T, TA>(string op) where T : unmanaged, IFloatingPointIeee754<T> where TA : struct, IAtomicAdd<T> => op switch
    {
        "MaxPool2d" => ((Action<ArrayView<T>, ArrayView<T>, ArrayView<int>, PoolGeometry, int, int>)MaxPoolKernel<T>).Method,
        "MaxPool2dBackward" => ((Action<ArrayView<T>, ArrayView<int>, ArrayView<T>, ArrayView<int>, PoolGeometry, int, int>)MaxPoolBackwardKernel<T, TA>).Method,
        "AvgPool2d" => ((Action<ArrayView<T>, ArrayView<T>, PoolGeometry, T, int>)AvgPoolKernel<T>).Method,
        "AvgPool2dBackward" => ((Action<ArrayView<T>, ArrayView<T>, PoolGeometry, T, int>)AvgPoolBackwardKernel<T>).Method,
        "UpsampleNearest2d" => ((Action<ArrayView<T>, ArrayView<T>, PoolGeometry, int>)UpsampleKernel<T>).Method,
        _ => ((Action<ArrayView<T>, ArrayView<T>, PoolGeometry, int>)UpsampleBackwardKernel<T>).Method,
    };

    public static IEnumerable<KernelSpec> Specs()
    {
        foreach (var t in new[] { DType.F32, DType.F64 })
            foreach (var op in Ops)
                yield return Spec(op, t);
    }
}
