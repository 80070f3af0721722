using System.Numerics;
using System.Reflection;
using ILGPU;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>Sizes, flags and element offsets of the views a batch-norm kernel touches (one record for both kernels).</summary>
internal struct BatchNormArgs
{
    public int N, C, HW;
    public int HasW, HasB;
    public int X, Y, W, B, Mean, Invstd, Dy, Dx, Dw, Db;
}

/// <summary>
/// Batch norm over (N, H, W) per channel of a dense (N, C, H, W) tensor with the batch's statistics, and its backward
/// (Ops/BatchNormOps.cs has the math). One group per channel (channels stride over the grid): each thread walks
/// its share of the channel's N planes of H*W (plane by plane, so no division per element), GroupReduce combines
/// the partial sums, and every thread then writes its share of the outputs. Forward: two passes for the statistics,
/// mean then the sum of squared deviations (no E[x^2] - E[x]^2 cancellation, as the CPU kernel), one for y.
/// Backward: one pass for dbias = sum dy and dweight = sum dy * xhat, one for dx.
/// </summary>
internal static class BatchNormKernels
{
    public static void ForwardKernel<T>(ArrayView<T> x, ArrayView<T> w, ArrayView<T> bias, ArrayView<T> y, ArrayView<T> mean, ArrayView<T> invstd,
        BatchNormArgs a, T eps, T count)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int tid = Group.IdxX, threads = Group.DimX, groups = Grid.DimX;
        int n = a.N, c = a.C, hw = a.HW;
        for (int ch = Grid.IdxX; ch < c; ch += groups)
        {
            T s = T.Zero;
            for (int i = 0; i < n; i++)
                for (int k = tid, o = a.X + (i * c + ch) * hw; k < hw; k += threads) s += x[o + k];
            T mu = GroupReduce.All(s, new SumReduce<T>()) / count;
            T q = T.Zero;
            for (int i = 0; i < n; i++)
                for (int k = tid, o = a.X + (i * c + ch) * hw; k < hw; k += threads)
                {
                    T d = x[o + k] - mu;
                    q += d * d;
                }
            T rstd = T.One / T.Sqrt(GroupReduce.All(q, new SumReduce<T>()) / count + eps);
            T scale = a.HasW != 0 ? rstd * w[a.W + ch] : rstd;
            T shift = (a.HasB != 0 ? bias[a.B + ch] : T.Zero) - mu * scale;
            for (int i = 0; i < n; i++)
                for (int k = tid, o = (i * c + ch) * hw; k < hw; k += threads) y[a.Y + o + k] = x[a.X + o + k] * scale + shift;
            if (tid == 0)
            {
                mean[a.Mean + ch] = mu;
                invstd[a.Invstd + ch] = rstd;
            }
        }
    }

    /// <summary>dx = weight * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)); dweight = sum dy * xhat; dbias = sum dy.</summary>
    public static void BackwardKernel<T>(ArrayView<T> dy, ArrayView<T> x, ArrayView<T> w, ArrayView<T> mean, ArrayView<T> invstd,
        ArrayView<T> dx, ArrayView<T> dw, ArrayView<T> db, BatchNormArgs a, T count)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int tid = Group.IdxX, threads = Group.DimX, groups = Grid.DimX;
        int n = a.N, c = a.C, hw = a.HW;
        for (int ch = Grid.IdxX; ch < c; ch += groups)
        {
            T mu = mean[a.Mean + ch], rstd = invstd[a.Invstd + ch];
            T sg = T.Zero, sgx = T.Zero;
            for (int i = 0; i < n; i++)
                for (int k = tid, o = (i * c + ch) * hw; k < hw; k += threads)
                {
                    T g = dy[a.Dy + o + k];
                    sg += g;
                    sgx += g * ((x[a.X + o + k] - mu) * rstd);
                }
            T sumG = GroupReduce.All(sg, new SumReduce<T>());
            T sumGx = GroupReduce.All(sgx, new SumReduce<T>());
            T scale = a.HasW != 0 ? rstd * w[a.W + ch] : rstd;
            T meanG = sumG / count, meanGx = sumGx / count;
            for (int i = 0; i < n; i++)
                for (int k = tid, o = (i * c + ch) * hw; k < hw; k += threads)
                {
                    T xhat = (x[a.X + o + k] - mu) * rstd;
                    dx[a.Dx + o + k] = scale * (dy[a.Dy + o + k] - meanG - xhat * meanGx);
                }
            if (tid == 0)
            {
                dw[a.Dw + ch] = sumGx;
                db[a.Db + ch] = sumG;
            }
        }
    }

    // ---- launchers ----

    public static void Forward(GpuBackend b, Tensor x, Tensor w, Tensor bias, Tensor y, Tensor mean, Tensor invstd, NormAttrs attrs)
    {
        Check("BatchNorm2d", x, w, bias, y, mean, invstd);
        var a = Args(x);
        (a.HasW, a.HasB) = (w.Numel > 0 ? 1 : 0, bias.Numel > 0 ? 1 : 0);
        (a.X, a.W, a.B, a.Y, a.Mean, a.Invstd) = (x.Offset, w.Offset, bias.Offset, y.Offset, mean.Offset, invstd.Offset);
        if (a.C == 0 || a.N * a.HW == 0) return;
        b.Launch(ForwardSpec(x.DType), b.GroupPerItem(a.C), V(x), V(w), V(bias), V(y), V(mean), V(invstd), a, Scalar(x.DType, attrs.Eps), Scalar(x.DType, (double)a.N * a.HW));
    }

    public static void Backward(GpuBackend b, Tensor dy, Tensor x, Tensor w, Tensor mean, Tensor invstd, Tensor dx, Tensor dw, Tensor db)
    {
        Check("BatchNorm2dBackward", x, dy, w, mean, invstd, dx, dw, db);
        var a = Args(x);
        a.HasW = w.Numel > 0 ? 1 : 0;
        (a.Dy, a.X, a.W, a.Mean, a.Invstd, a.Dx, a.Dw, a.Db) = (dy.Offset, x.Offset, w.Offset, mean.Offset, invstd.Offset, dx.Offset, dw.Offset, db.Offset);
        if (a.C == 0 || a.N * a.HW == 0) return;
        b.Launch(BackwardSpec(x.DType), b.GroupPerItem(a.C), V(dy), V(x), V(w), V(mean), V(invstd), V(dx), V(dw), V(db), a, Scalar(x.DType, (double)a.N * a.HW));
    }

    private static BatchNormArgs Args(Tensor x) => new() { N = x.Shape[0], C = x.Shape[1], HW = x.Shape[2] * x.Shape[3] };

    private static void Check(string op, Tensor x, params Tensor[] others)
    {
        if (x.DType is not (DType.F32 or DType.F64))
            throw new NotSupportedException($"the GPU backend has no {op} kernel for dtype {x.DType} (F32 and F64 only)");
        if (x.Rank != 4) throw new ArgumentException($"{op}: x must be (N, C, H, W), got {x.Describe()}");
        foreach (var t in others.Prepend(x))
        {
            if (!t.IsContiguous) throw new ArgumentException($"{op}: the GPU kernel needs dense inputs (the front end makes them), got {t.Describe()}");
            if (t.Numel > 0 && t.DType != x.DType) throw new ArgumentException($"{op}: {t.Describe()} must have the dtype of {x.Describe()}");
        }
    }

    private static object V(Tensor t) => CopyKernels.View((GpuStorage)t.Storage);

    /// <summary>A scalar as T (kernels cannot convert an int or double to a generic T: ILGPU rejects CreateTruncating).</summary>
    private static object Scalar(DType t, double v) => t == DType.F32 ? (object)(float)v : v;

    // ---- specs ----

    private static KernelSpec ForwardSpec(DType t) => t == DType.F32 ? new("BatchNorm2d_F32", Fwd<float>()) : new("BatchNorm2d_F64", Fwd<double>());
    private static KernelSpec BackwardSpec(DType t) => t == DType.F32 ? new("BatchNorm2dBackward_F32", Bwd<float>()) : new("BatchNorm2dBackward_F64", Bwd<double>());

    private static MethodInfo Fwd<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, BatchNormArgs, T, T>)ForwardKernel<T>).Method;

    private static MethodInfo Bwd<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, BatchNormArgs, T>)BackwardKernel<T>).Method;

    public static IEnumerable<KernelSpec> Specs() => [ForwardSpec(DType.F32), ForwardSpec(DType.F64), BackwardSpec(DType.F32), BackwardSpec(DType.F64)];
}
