using System.Numerics;
using System.Reflection;
using ILGPU;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>
/// Fused cross-entropy: logits (N, C), integer targets (N) -> mean loss over the counted rows and the
/// per-row log-sum-exp, which the backward pass reuses. Forward: one group per row writes lse and the
/// row's loss (lse - x[target], 0 on ignored rows) to a workspace; a single group then sums the row
/// losses in double in a fixed order and divides by the count (NaN when no row counts, as PyTorch).
/// Backward: one group computes dloss / count; then dlogits = (exp(x - lse) - onehot(target)) * that,
/// zero on ignored rows. A target outside [0, C) that is not the ignore index is reported through
/// <see cref="KernelStatus"/>.
/// </summary>
internal static class LossKernels
{
    // ---- kernels ----

    public static void RowsKernel<T, CT, TI, CI>(ArrayView<T> logits, ArrayView<TI> targets, ArrayView<T> lse, ArrayView<double> rowLoss, ArrayView<int> status,
        int xOffset, int tOffset, int lseOffset, int rows, int c, int ignoreIndex)
        where T : unmanaged, IFloatingPointIeee754<T> where CT : struct, ICodec<T> where TI : unmanaged where CI : struct, ICodec<TI>
    {
        CI ci = default;
        CT ct = default;
        int tid = Group.IdxX, threads = Group.DimX, groups = Grid.DimX;
        for (int row = Grid.IdxX; row < rows; row += groups)
        {
            int xb = xOffset + row * c;
            T m = T.NegativeInfinity;
            for (int j = tid; j < c; j += threads) m = new MaxReduce<T>().Combine(m, logits[xb + j]);
            m = GroupReduce.All(m, new MaxReduce<T>());
            T s = T.Zero;
            for (int j = tid; j < c; j += threads) s += T.Exp(logits[xb + j] - m);
            s = GroupReduce.All(s, new SumReduce<T>());
            if (tid != 0) continue;
            T l = m + T.Log(s);
            lse[lseOffset + row] = l;
            long t = ci.ToLong(targets[tOffset + row]);
            double loss = 0;
            if (t != ignoreIndex)
            {
                if (t < 0 || t >= c) KernelStatus.Report(status, Op.CrossEntropy, t, c);
                else loss = ct.ToDouble(l - logits[xb + (int)t]);
            }
            rowLoss[row] = loss;
        }
    }

    /// <summary>One group: loss = sum of row losses / counted rows.</summary>
    public static void MeanKernel<T, CT, TI, CI>(ArrayView<double> rowLoss, ArrayView<TI> targets, ArrayView<T> loss, int tOffset, int lossOffset, int rows, int ignoreIndex)
        where T : unmanaged, IFloatingPointIeee754<T> where CT : struct, ICodec<T> where TI : unmanaged where CI : struct, ICodec<TI>
    {
        CI ci = default;
        CT ct = default;
        int tid = Group.IdxX, threads = Group.DimX;
        double sum = 0;
        int count = 0;
        for (int r = tid; r < rows; r += threads)
        {
            sum += rowLoss[r];
            if (ci.ToLong(targets[tOffset + r]) != ignoreIndex) count++;
        }
        sum = GroupReduce.All(sum, new SumReduce<double>());
        count = GroupReduce.All(count, new SumReduce<int>());
        if (tid == 0 && Grid.IdxX == 0) loss[lossOffset] = ct.FromDouble(count == 0 ? double.NaN : sum / count);
    }

    /// <summary>One group: scale[0] = dloss / max(count, 1), in T (as the CPU).</summary>
    public static void ScaleKernel<T, CT, TI, CI>(ArrayView<T> dloss, ArrayView<TI> targets, ArrayView<T> scale, int dlossOffset, int tOffset, int rows, int ignoreIndex)
        where T : unmanaged, IFloatingPointIeee754<T> where CT : struct, ICodec<T> where TI : unmanaged where CI : struct, ICodec<TI>
    {
        CI ci = default;
        CT ct = default;
        int tid = Group.IdxX, threads = Group.DimX;
        int count = 0;
        for (int r = tid; r < rows; r += threads)
            if (ci.ToLong(targets[tOffset + r]) != ignoreIndex) count++;
        count = GroupReduce.All(count, new SumReduce<int>());
        if (tid == 0 && Grid.IdxX == 0) scale[0] = dloss[dlossOffset] / ct.FromLong(count > 1 ? count : 1);
    }

    public static void BackwardKernel<T, CT, TI, CI>(ArrayView<T> logits, ArrayView<TI> targets, ArrayView<T> lse, ArrayView<T> scale, ArrayView<T> dlogits, ArrayView<int> status,
        int xOffset, int tOffset, int lseOffset, int dxOffset, int rows, int c, int ignoreIndex)
        where T : unmanaged, IFloatingPointIeee754<T> where CT : struct, ICodec<T> where TI : unmanaged where CI : struct, ICodec<TI>
    {
        CI ci = default;
        T k = scale[0];
        int step = Grid.DimX * Group.DimX;
        int total = rows * c;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int row = e / c, j = e - row * c;
            long t = ci.ToLong(targets[tOffset + row]);
            if (t == ignoreIndex)
            {
                dlogits[dxOffset + e] = T.Zero;
                continue;
            }
            if (t < 0 || t >= c)
            {
                if (j == 0) KernelStatus.Report(status, Op.CrossEntropyBackward, t, c);
                continue;
            }
            T p = T.Exp(logits[xOffset + e] - lse[lseOffset + row]);
            if (j == t) p -= T.One;
            dlogits[dxOffset + e] = p * k;
        }
    }

    // ---- launchers ----

    private static object V(Tensor t) => CopyKernels.View((GpuStorage)t.Storage);

    private static void Check(string op, Tensor logits, Tensor targets)
    {
        if (logits.DType is not (DType.F32 or DType.F64))
            throw new NotSupportedException($"the GPU backend has no {op} kernel for dtype {logits.DType} (F32 and F64 only)");
        if (targets.DType is not (DType.I32 or DType.I64)) throw new ArgumentException($"{op}: targets must be I32 or I64, got {targets.Describe()}");
        if (logits.Rank != 2 || targets.Rank != 1 || targets.Shape[0] != logits.Shape[0] || !logits.IsContiguous || !targets.IsContiguous)
            throw new ArgumentException($"{op}: need dense logits (N, C) and targets (N), got {logits.Describe()} and {targets.Describe()}");
    }

    public static void CrossEntropy(GpuBackend b, Tensor logits, Tensor targets, Tensor loss, Tensor lse, CrossEntropyAttrs a)
    {
        Check("CrossEntropy", logits, targets);
        int n = logits.Shape[0], c = logits.Shape[1];
        using var rowLoss = b.Workspace(DType.F64, Math.Max(n, 1));
        var specs = SpecsFor(logits.DType, targets.DType);
        if (n > 0 && c > 0)
            b.Launch(specs.Rows, b.RowGroups(n), V(logits), V(targets), V(lse), rowLoss.View<double>(), b.Status,
                logits.Offset, targets.Offset, lse.Offset, n, c, a.IgnoreIndex);
        else if (n > 0) throw new ArgumentException($"CrossEntropy: logits {logits.Describe()} have no classes");
        b.Launch(specs.Mean, new KernelConfig(1, b.GroupSize), rowLoss.View<double>(), V(targets), V(loss), targets.Offset, loss.Offset, n, a.IgnoreIndex);
    }

    public static void CrossEntropyBackward(GpuBackend b, Tensor dloss, Tensor logits, Tensor targets, Tensor lse, Tensor dlogits, CrossEntropyAttrs a)
    {
        Check("CrossEntropyBackward", logits, targets);
        if (dloss.DType != logits.DType || lse.DType != logits.DType)
            throw new ArgumentException($"CrossEntropyBackward: {dloss.Describe()} and {lse.Describe()} must have the dtype of {logits.Describe()}");
        int n = logits.Shape[0], c = logits.Shape[1];
        if (n == 0 || c == 0) return;
        using var scale = b.Workspace(logits.DType, 1);
        var specs = SpecsFor(logits.DType, targets.DType);
        b.Launch(specs.Scale, new KernelConfig(1, b.GroupSize), V(dloss), V(targets), CopyKernels.View(scale), dloss.Offset, targets.Offset, n, a.IgnoreIndex);
        b.Launch(specs.Backward, b.Grid((long)n * c), V(logits), V(targets), V(lse), CopyKernels.View(scale), V(dlogits), b.Status,
            logits.Offset, targets.Offset, lse.Offset, dlogits.Offset, n, c, a.IgnoreIndex);
    }

    // ---- specs ----

    private sealed record LossSpecs(KernelSpec Rows, KernelSpec Mean, KernelSpec Scale, KernelSpec Backward);

    private static LossSpecs SpecsFor(DType t, DType idx) => (t, idx) switch
    {
        (DType.F32, DType.I32) => Make<float, F32Codec, int, I32Codec>("F32_I32"),
        (DType.F32, _) => Make<float, F32Codec, long, I64Codec>("F32_I64"),
        (DType.F64, DType.I32) => Make<double, F64Codec, int, I32Codec>("F64_I32"),
        _ => Make<double, F64Codec, long, I64Codec>("F64_I64"),
    };

    private static LossSpecs Make<T, CT, TI, CI>(string suffix) where T : unmanaged, IFloatingPointIeee754<T> where CT : struct, ICodec<T> where TI : unmanaged where CI : struct, ICodec<TI> => new(
        new($"CrossEntropy_{suffix}", ((Action<ArrayView<T>, ArrayView<TI>, ArrayView<T>, ArrayView<double>, ArrayView<int>, int, int, int, int, int, int>)RowsKernel<T, CT, TI, CI>).Method),
        new($"CrossEntropyMean_{suffix}", ((Action<ArrayView<double>, ArrayView<TI>, ArrayView<T>, int, int, int, int>)MeanKernel<T, CT, TI, CI>).Method),
        new($"CrossEntropyScale_{suffix}", ((Action<ArrayView<T>, ArrayView<TI>, ArrayView<T>, int, int, int, int>)ScaleKernel<T, CT, TI, CI>).Method),
        new($"CrossEntropyBackward_{suffix}", ((Action<ArrayView<T>, ArrayView<TI>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<int>, int, int, int, int, int, int, int>)BackwardKernel<T, CT, TI, CI>).Method));

    public static IEnumerable<KernelSpec> Specs()
    {
        foreach (var t in new[] { DType.F32, DType.F64 })
            foreach (var idx in new[] { DType.I32, DType.I64 })
            {
                var s = SpecsFor(t, idx);
                yield return s.Rows;
                yield return s.Mean;
                yield return s.Scale;
                yield return s.Backward;
            }
    }
}
