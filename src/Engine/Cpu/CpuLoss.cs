using System.Numerics;
using System.Numerics.Tensors;

namespace ManagedTensor.Cpu;

/// <summary>
/// Fused cross-entropy: logits (N, C) and integer targets (N) -> mean loss and the per-row log-sum-exp,
/// which the backward pass reuses to rebuild softmax without a second reduction. Log-softmax is never
/// stored. Rows whose target equals the ignore index count neither in the sum nor in the mean.
/// </summary>
internal static class CpuLoss
{
    /// <summary>Reads the targets and rejects any outside [0, C) that is not the ignore index; returns how many count.</summary>
    private static (long[] Targets, int Count) ReadTargets(Tensor targets, int c, int ignoreIndex, string op)
    {
        var t = NnKernels.ReadIndices(targets, op);
        int count = 0;
        for (int r = 0; r < t.Length; r++)
        {
            if (t[r] == ignoreIndex) continue;
            if ((ulong)t[r] >= (ulong)c)
                throw new IndexOutOfRangeException($"{op}: target {t[r]} of row {r} is out of range for {c} classes (ignore index {ignoreIndex})");
            count++;
        }
        return (t, count);
    }

    public static void CrossEntropy(Tensor logits, Tensor targets, Tensor loss, Tensor lse, CrossEntropyAttrs a)
    {
        switch (logits.DType)
        {
            case DType.F32: CrossEntropy<float>(logits, targets, loss, lse, a.IgnoreIndex); break;
            case DType.F64: CrossEntropy<double>(logits, targets, loss, lse, a.IgnoreIndex); break;
            default: throw NnKernels.Unsupported("CrossEntropy", logits);
        }
    }

    /// <summary>
    /// lse[r] = m + log(sum_j exp(x[r, j] - m)), m = max_j x[r, j];  loss = mean over counted rows of
    /// lse[r] - x[r, target[r]] (NaN when no row counts, as PyTorch). Row losses are summed in double per
    /// chunk and the chunks combined in order.
    /// </summary>
    private static void CrossEntropy<T>(Tensor logitsT, Tensor targetsT, Tensor lossT, Tensor lseT, int ignoreIndex)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = logitsT.Shape[0], c = logitsT.Shape[1];
        var (targets, count) = ReadTargets(targetsT, c, ignoreIndex, "CrossEntropy");
        var x = NnKernels.Buf<T>(logitsT);
        var lse = NnKernels.Buf<T>(lseT);
        int chunks = NnKernels.ChunkCount(n, 4L * c);
        var partial = new double[chunks];
        NnKernels.ForChunks(chunks, n, (chunk, r0, r1) =>
        {
            using var scratch = new Scratch<T>(c);
            var e = scratch.Span; // (C) exp(x - m)
            double sum = 0;
            for (int r = r0; r < r1; r++)
            {
                var xr = new ReadOnlySpan<T>(x.Data, x.Offset + r * c, c); // (C)
                T m = TensorPrimitives.Max(xr);
                TensorPrimitives.Subtract(xr, m, e);
                TensorPrimitives.Exp(e, e);
                T l = m + T.Log(TensorPrimitives.Sum<T>(e));
                lse.Data[lse.Offset + r] = l;
                if (targets[r] != ignoreIndex) sum += double.CreateTruncating(l - xr[(int)targets[r]]);
            }
            partial[chunk] = sum;
        });
        double total = 0;
        foreach (double p in partial) total += p;
        lossT.Elements<T>()[lossT.Offset] = T.CreateTruncating(count == 0 ? double.NaN : total / count);
    }

    public static void CrossEntropyBackward(Tensor dloss, Tensor logits, Tensor targets, Tensor lse, Tensor dlogits, CrossEntropyAttrs a)
    {
        NnKernels.CheckSameDType("CrossEntropyBackward", logits, dloss, lse);
        switch (logits.DType)
        {
            case DType.F32: CrossEntropyBackward<float>(dloss, logits, targets, lse, dlogits, a.IgnoreIndex); break;
            case DType.F64: CrossEntropyBackward<double>(dloss, logits, targets, lse, dlogits, a.IgnoreIndex); break;
            default: throw NnKernels.Unsupported("CrossEntropyBackward", logits);
        }
    }

    /// <summary>dlogits[r] = (softmax(x[r]) - onehot(target[r])) * dloss / count, softmax = exp(x - lse); zero on ignored rows.</summary>
    private static void CrossEntropyBackward<T>(Tensor dlossT, Tensor logitsT, Tensor targetsT, Tensor lseT, Tensor dlogitsT, int ignoreIndex)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = logitsT.Shape[0], c = logitsT.Shape[1];
        var (targets, count) = ReadTargets(targetsT, c, ignoreIndex, "CrossEntropyBackward");
        var x = NnKernels.Buf<T>(logitsT);
        var lse = NnKernels.Buf<T>(lseT);
        var dx = NnKernels.Buf<T>(dlogitsT);
        T scale = dlossT.Elements<T>()[dlossT.Offset] / T.CreateTruncating(Math.Max(count, 1));
        NnKernels.For(n, 3L * c, (_, r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                var dr = new Span<T>(dx.Data, dx.Offset + r * c, c); // (C)
                if (targets[r] == ignoreIndex)
                {
                    dr.Clear();
                    continue;
                }
                TensorPrimitives.Subtract(new ReadOnlySpan<T>(x.Data, x.Offset + r * c, c), lse.Data[lse.Offset + r], dr);
                TensorPrimitives.Exp(dr, dr);
                dr[(int)targets[r]] -= T.One;
                TensorPrimitives.Multiply(dr, scale, dr);
            }
        });
    }
}
