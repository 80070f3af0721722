using System.Numerics;
using System.Reflection;
using ILGPU;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>Sizes, flags and the element offsets of every view a norm kernel touches (one record for all three kernels).</summary>
internal struct NormArgs
{
    public int Rows, C;
    /// <summary>1 for RMS norm (mean 0, no bias), 0 for layer norm.</summary>
    public int Rms;
    public int HasW, HasB, WantDw, WantDb;
    public int X, Y, W, B, Mean, Rstd, Dy, Dx, Dw, Db;
}

/// <summary>
/// Softmax, log-softmax, layer norm and RMS norm over the last axis, and the norms' backward passes.
/// One group per row (rows stride over the grid): the group's threads walk the row, GroupReduce
/// combines their partial max / sums, every thread then writes its share of the outputs. The front
/// end hands these ops dense inputs (offsets may be non-zero). The weight and bias gradients are
/// column sums over rows, one thread per column walking the rows in order: deterministic, coalesced.
/// </summary>
internal static class NormKernels
{
    // ---- kernels ----

    /// <summary>softmax_j = exp(x_j - m) / sum_k exp(x_k - m), m = max_k x_k; log-softmax = x_j - m - log(sum_k exp(x_k - m)).</summary>
    public static void SoftmaxKernel<T>(ArrayView<T> x, ArrayView<T> y, int xOffset, int yOffset, int rows, int c, int log)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int tid = Group.IdxX, threads = Group.DimX, groups = Grid.DimX;
        for (int row = Grid.IdxX; row < rows; row += groups)
        {
            int xb = xOffset + row * c, yb = yOffset + row * c;
            T m = T.NegativeInfinity;
            for (int j = tid; j < c; j += threads) m = new MaxReduce<T>().Combine(m, x[xb + j]);
            m = GroupReduce.All(m, new MaxReduce<T>());
            T s = T.Zero;
            for (int j = tid; j < c; j += threads) s += T.Exp(x[xb + j] - m);
            s = GroupReduce.All(s, new SumReduce<T>());
            if (log != 0)
            {
                T lse = m + T.Log(s);
                for (int j = tid; j < c; j += threads) y[yb + j] = x[xb + j] - lse;
            }
            else
            {
                T inv = T.One / s;
                for (int j = tid; j < c; j += threads) y[yb + j] = T.Exp(x[xb + j] - m) * inv;
            }
        }
    }

    /// <summary>
    /// Layer norm (rms = 0): y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(mean((x - mean)^2) + eps);
    /// RMS norm (rms = 1): mean = 0 and no bias. mean and rstd are written per row (mean only for layer norm).
    /// </summary>
    public static void NormKernel<T>(ArrayView<T> x, ArrayView<T> w, ArrayView<T> bias, ArrayView<T> y, ArrayView<T> mean, ArrayView<T> rstd, NormArgs a, T eps, T n)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int tid = Group.IdxX, threads = Group.DimX, groups = Grid.DimX;
        int rows = a.Rows, c = a.C, rms = a.Rms, hasW = a.HasW, hasB = a.HasB;
        int xOffset = a.X, yOffset = a.Y, wOffset = a.W, bOffset = a.B, meanOffset = a.Mean, rstdOffset = a.Rstd;
        for (int row = Grid.IdxX; row < rows; row += groups)
        {
            int xb = xOffset + row * c, yb = yOffset + row * c;
            T m = T.Zero;
            if (rms == 0)
            {
                T s = T.Zero;
                for (int j = tid; j < c; j += threads) s += x[xb + j];
                m = GroupReduce.All(s, new SumReduce<T>()) / n;
            }
            T q = T.Zero;
            for (int j = tid; j < c; j += threads)
            {
                T d = x[xb + j] - m;
                q += d * d;
            }
            T rs = T.One / T.Sqrt(GroupReduce.All(q, new SumReduce<T>()) / n + eps);
            for (int j = tid; j < c; j += threads)
            {
                T v = (x[xb + j] - m) * rs;
                if (hasW != 0) v *= w[wOffset + j];
                if (hasB != 0) v += bias[bOffset + j];
                y[yb + j] = v;
            }
            if (tid == 0)
            {
                if (rms == 0) mean[meanOffset + row] = m;
                rstd[rstdOffset + row] = rs;
            }
        }
    }

    /// <summary>
    /// dx of layer norm (rms = 0) and RMS norm (rms = 1), as llm.c's layernorm_backward. With
    /// norm = (x - mean) * rstd and dnorm = dy * w (dy without a weight):
    ///   dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), RMS norm without the mean(dnorm) term.
    /// </summary>
    public static void NormBackwardKernel<T>(ArrayView<T> dy, ArrayView<T> x, ArrayView<T> w, ArrayView<T> mean, ArrayView<T> rstd, ArrayView<T> dx, NormArgs a, T n)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int tid = Group.IdxX, threads = Group.DimX, groups = Grid.DimX;
        int rows = a.Rows, c = a.C, rms = a.Rms, hasW = a.HasW;
        int dyOffset = a.Dy, xOffset = a.X, wOffset = a.W, meanOffset = a.Mean, rstdOffset = a.Rstd, dxOffset = a.Dx;
        for (int row = Grid.IdxX; row < rows; row += groups)
        {
            int xb = xOffset + row * c, db = dyOffset + row * c;
            T m = rms == 0 ? mean[meanOffset + row] : T.Zero;
            T rs = rstd[rstdOffset + row];
            T sumD = T.Zero, sumDN = T.Zero;
            for (int j = tid; j < c; j += threads)
            {
                T norm = (x[xb + j] - m) * rs;
                T dn = hasW != 0 ? dy[db + j] * w[wOffset + j] : dy[db + j];
                sumD += dn;
                sumDN += dn * norm;
            }
            T dnormMean = rms == 0 ? GroupReduce.All(sumD, new SumReduce<T>()) / n : T.Zero;
            T dnormNormMean = GroupReduce.All(sumDN, new SumReduce<T>()) / n;
            for (int j = tid; j < c; j += threads)
            {
                T norm = (x[xb + j] - m) * rs;
                T dn = hasW != 0 ? dy[db + j] * w[wOffset + j] : dy[db + j];
                dx[dxOffset + row * c + j] = (norm * -dnormNormMean + dn - dnormMean) * rs;
            }
        }
    }

    /// <summary>dw_j = sum_rows dy * norm and db_j = sum_rows dy: one thread per column j.</summary>
    public static void NormParamGradKernel<T>(ArrayView<T> dy, ArrayView<T> x, ArrayView<T> mean, ArrayView<T> rstd, ArrayView<T> dw, ArrayView<T> dbias, NormArgs a)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int step = Grid.DimX * Group.DimX;
        int rows = a.Rows, c = a.C, rms = a.Rms, wantW = a.WantDw, wantB = a.WantDb;
        int dyOffset = a.Dy, xOffset = a.X, meanOffset = a.Mean, rstdOffset = a.Rstd, dwOffset = a.Dw, dbOffset = a.Db;
        for (int j = Grid.IdxX * Group.DimX + Group.IdxX; j < c; j += step)
        {
            T sw = T.Zero, sb = T.Zero;
            for (int r = 0; r < rows; r++)
            {
                T g = dy[dyOffset + r * c + j];
                T m = rms == 0 ? mean[meanOffset + r] : T.Zero;
                sw += g * ((x[xOffset + r * c + j] - m) * rstd[rstdOffset + r]);
                sb += g;
            }
            if (wantW != 0) dw[dwOffset + j] = sw;
            if (wantB != 0) dbias[dbOffset + j] = sb;
        }
    }

    // ---- launchers ----

    private static (int Rows, int C) RowsOf(Tensor x)
    {
        int c = x.Rank == 0 ? 1 : x.Shape[^1];
        return (c == 0 ? 0 : x.Numel / c, c);
    }

    private static void CheckDense(string op, params Tensor[] ts)
    {
        foreach (var t in ts)
            if (!t.IsContiguous) throw new ArgumentException($"{op}: the GPU kernel needs dense inputs (the front end makes them), got {t.Describe()}");
    }

    private static void CheckFloat(string op, Tensor x)
    {
        if (x.DType is not (DType.F32 or DType.F64))
            throw new NotSupportedException($"the GPU backend has no {op} kernel for dtype {x.DType} (F32 and F64 only; cast with To(DType.F32))");
    }

    private static void CheckSameDType(string op, Tensor reference, params Tensor[] others)
    {
        foreach (var t in others)
            if (t.DType != reference.DType) throw new ArgumentException($"{op}: {t.Describe()} must have the dtype of {reference.Describe()}");
    }

    private static object V(Tensor t) => CopyKernels.View((GpuStorage)t.Storage);

    public static void Softmax(GpuBackend b, Tensor x, Tensor y, bool log)
    {
        string op = log ? "LogSoftmax" : "Softmax";
        CheckFloat(op, x);
        CheckDense(op, x);
        var (rows, c) = RowsOf(x);
        if (rows == 0) return;
        b.Launch(SoftmaxSpec(x.DType), b.RowGroups(rows), V(x), V(y), x.Offset, y.Offset, rows, c, log ? 1 : 0);
    }

    public static void LayerNorm(GpuBackend b, Tensor x, Tensor w, Tensor bias, Tensor y, Tensor mean, Tensor rstd, NormAttrs a)
    {
        CheckFloat("LayerNorm", x);
        CheckSameDType("LayerNorm", x, w, bias);
        CheckDense("LayerNorm", x, w, bias);
        var (rows, c) = RowsOf(x);
        if (rows == 0) return;
        var args = new NormArgs
        {
            Rows = rows,
            C = c,
            HasW = w.Numel > 0 ? 1 : 0,
            HasB = bias.Numel > 0 ? 1 : 0,
            X = x.Offset,
            Y = y.Offset,
            W = w.Offset,
            B = bias.Offset,
            Mean = mean.Offset,
            Rstd = rstd.Offset,
        };
        b.Launch(NormSpec(x.DType), b.RowGroups(rows), V(x), V(w), V(bias), V(y), V(mean), V(rstd), args, Eps(x.DType, a.Eps), Count(x.DType, c));
    }

    public static void RmsNorm(GpuBackend b, Tensor x, Tensor w, Tensor y, Tensor rstd, NormAttrs a)
    {
        CheckFloat("RmsNorm", x);
        CheckSameDType("RmsNorm", x, w);
        CheckDense("RmsNorm", x, w);
        var (rows, c) = RowsOf(x);
        if (rows == 0) return;
        // No mean and no bias: w and rstd stand in for the unused views.
        var args = new NormArgs { Rows = rows, C = c, Rms = 1, HasW = w.Numel > 0 ? 1 : 0, X = x.Offset, Y = y.Offset, W = w.Offset, Rstd = rstd.Offset };
        b.Launch(NormSpec(x.DType), b.RowGroups(rows), V(x), V(w), V(w), V(y), V(rstd), V(rstd), args, Eps(x.DType, a.Eps), Count(x.DType, c));
    }

    private static object Eps(DType t, double eps) => t == DType.F32 ? (object)(float)eps : eps;

    /// <summary>The row length as T (kernels cannot convert an int to a generic T: ILGPU rejects CreateTruncating).</summary>
    private static object Count(DType t, int c) => t == DType.F32 ? (object)(float)c : (double)c;

    public static void LayerNormBackward(GpuBackend b, Tensor dy, Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dx, Tensor dw, Tensor db)
    {
        CheckFloat("LayerNormBackward", x);
        CheckSameDType("LayerNormBackward", x, dy, w, mean, rstd);
        CheckDense("LayerNormBackward", dy, x, w, mean, rstd);
        Backward(b, dy, x, w, mean, rstd, dx, dw, db, rms: false);
    }

    public static void RmsNormBackward(GpuBackend b, Tensor dy, Tensor x, Tensor w, Tensor rstd, Tensor dx, Tensor dw)
    {
        CheckFloat("RmsNormBackward", x);
        CheckSameDType("RmsNormBackward", x, dy, w, rstd);
        CheckDense("RmsNormBackward", dy, x, w, rstd);
        Backward(b, dy, x, w, rstd, rstd, dx, dw, dw, rms: true);
    }

    private static void Backward(GpuBackend b, Tensor dy, Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dx, Tensor dw, Tensor db, bool rms)
    {
        var (rows, c) = RowsOf(x);
        if (rows == 0) return;
        bool wantW = dw.Numel > 0, wantB = !rms && db.Numel > 0;
        var args = new NormArgs
        {
            Rows = rows,
            C = c,
            Rms = rms ? 1 : 0,
            HasW = w.Numel > 0 ? 1 : 0,
            WantDw = wantW ? 1 : 0,
            WantDb = wantB ? 1 : 0,
            X = x.Offset,
            W = w.Offset,
            Mean = mean.Offset,
            Rstd = rstd.Offset,
            Dy = dy.Offset,
            Dx = dx.Offset,
            Dw = dw.Offset,
            Db = db.Offset,
        };
        b.Launch(BackwardSpec(x.DType), b.RowGroups(rows), V(dy), V(x), V(w), V(mean), V(rstd), V(dx), args, Count(x.DType, c));
        if (wantW || wantB) b.Launch(ParamGradSpec(x.DType), b.Grid(c), V(dy), V(x), V(mean), V(rstd), V(dw), V(db), args);
    }

    // ---- specs ----

    private static KernelSpec SoftmaxSpec(DType t) => t == DType.F32 ? new("Softmax_F32", Softmax<float>()) : new("Softmax_F64", Softmax<double>());
    private static KernelSpec NormSpec(DType t) => t == DType.F32 ? new("Norm_F32", Norm<float>()) : new("Norm_F64", Norm<double>());
    private static KernelSpec BackwardSpec(DType t) => t == DType.F32 ? new("NormBackward_F32", Bwd<float>()) : new("NormBackward_F64", Bwd<double>());
    private static KernelSpec ParamGradSpec(DType t) => t == DType.F32 ? new("NormParamGrad_F32", ParamGrad<float>()) : new("NormParamGrad_F64", ParamGrad<double>());

    private static MethodInfo Softmax<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, int, int, int, int, int>)SoftmaxKernel<T>).Method;

    private static MethodInfo Norm<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, NormArgs, T, T>)NormKernel<T>).Method;

    private static MethodInfo Bwd<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, NormArgs, T>)NormBackwardKernel<T>).Method;

    private static MethodInfo ParamGrad<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, NormArgs>)NormParamGradKernel<T>).Method;

    public static IEnumerable<KernelSpec> Specs()
    {
        foreach (var t in new[] { DType.F32, DType.F64 })
        {
            yield return SoftmaxSpec(t);
            yield return NormSpec(t);
            yield return BackwardSpec(t);
            yield return ParamGradSpec(t);
        }
    }
}
