using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ManagedTensor.Cpu;

/// <summary>
/// Sum, Mean, Max, Min, Var and ArgMax over any set of axes (see <see cref="ReduceLayout"/>).
/// Two loop shapes:
///   rows:    each output reduces its own rows of x; a contiguous row goes to a vectorized span routine
///            (reducing the last axis of a (N, C) tensor). Parallel over outputs.
///   columns: the kept innermost axis is contiguous in x and the reduced axes are outside it (reducing
///            axis 0 of (N, C), a bias gradient): whole rows of x are added into a block of outputs with
///            vector adds. Parallel over blocks of outputs.
/// Float sums accumulate in double (float32 lanes are widened to double inside the SIMD loop), so a float32
/// sum of millions of elements is correct to float32 rounding.
/// F16 and BF16 are reduced in float32; integer sums wrap in their own type, as the output does.
/// </summary>
internal static class CpuReduce
{
    public static void Reduce(Op op, Tensor x, Tensor y, ReduceAttrs a)
    {
        var expected = (int[])x.Shape.Clone();
        foreach (int axis in a.Axes) expected[axis] = 1;
        if (y.Numel != expected.Aggregate(1, (p, s) => p * s) || !y.IsContiguous)
            throw new ArgumentException($"{op} of {x.Describe()} over axes {Tensor.ShapeString(a.Axes)}: output {y.Describe()} must be contiguous with shape {Tensor.ShapeString(expected)}");
        if (op == Op.ArgMax && a.Axes.Length != 1)
            throw new ArgumentException($"ArgMax of {x.Describe()}: exactly one axis, got {Tensor.ShapeString(a.Axes)}");

        if (x.DType is DType.F16 or DType.BF16)
        {
            var wide = Tensor.Empty(x.Shape, DType.F32);
            CpuCopy.Copy(x, wide);
            var result = op == Op.ArgMax ? y : Tensor.Empty(y.Shape, DType.F32);
            Reduce(op, wide, result, a);
            if (!ReferenceEquals(result, y)) CpuCopy.Copy(result, y);
            return;
        }
        var layout = new ReduceLayout(x, a.Axes);
        if (layout.Outputs == 0) return;
        switch (x.DType)
        {
            case DType.F32: Typed<float>(op, x, y, a, layout); break;
            case DType.F64: Typed<double>(op, x, y, a, layout); break;
            case DType.I32: Typed<int>(op, x, y, a, layout); break;
            case DType.I64: Typed<long>(op, x, y, a, layout); break;
            case DType.I8: Typed<sbyte>(op, x, y, a, layout); break;
            case DType.U8: Typed<byte>(op, x, y, a, layout); break;
            default: throw new NotSupportedException($"the CPU backend has no {op} kernel for {x.Describe()}");
        }
    }

    private static void Typed<T>(Op op, Tensor x, Tensor y, ReduceAttrs a, ReduceLayout l) where T : unmanaged, INumber<T>
    {
        if (op is Op.Mean or Op.Var && !x.DType.IsFloat())
            throw new NotSupportedException($"{op} needs a floating-point tensor, got {x.Describe()}");
        T[] xs = x.Data<T>();
        int yOff = y.Offset;
        bool columns = !l.ContiguousRows && l.KeptInnerStride == 1 && l.KeptInnerSize >= 16;
        switch (op)
        {
            case Op.Sum or Op.Mean:
            {
                double scale = op == Op.Mean ? 1.0 / l.Count : 1.0; // an empty mean is 0 * inf = NaN, as PyTorch
                T[] ys = y.Data<T>();
                if (columns && (typeof(T) == typeof(float) || typeof(T) == typeof(double)))
                {
                    ColumnSum(xs, ys, yOff, l, scale);
                    return;
                }
                CpuParallel.For(l.Outputs, l.Count, (start, end) =>
                {
                    for (int o = start; o < end; o++)
                    {
                        var v = new SumVisitor<T>(xs);
                        l.VisitRows(l.BaseOffset(o), ref v);
                        ys[yOff + o] = typeof(T) == typeof(float) || typeof(T) == typeof(double)
                            ? T.CreateTruncating(v.Sum * scale)
                            : T.CreateTruncating(v.IntSum);
                    }
                });
                break;
            }
            case Op.Max or Op.Min:
            {
                T[] ys = y.Data<T>();
                bool max = op == Op.Max;
                if (columns)
                {
                    ColumnMinMax(xs, ys, yOff, l, max);
                    return;
                }
                CpuParallel.For(l.Outputs, l.Count, (start, end) =>
                {
                    for (int o = start; o < end; o++)
                    {
                        var v = new MinMaxVisitor<T>(xs, max);
                        l.VisitRows(l.BaseOffset(o), ref v);
                        ys[yOff + o] = v.Result;
                    }
                });
                break;
            }
            case Op.Var:
            {
                T[] ys = y.Data<T>();
                double divisor = Math.Max(0, l.Count - a.Correction); // n - correction, clamped at 0 as torch.var
                CpuParallel.For(l.Outputs, 2L * l.Count, (start, end) =>
                {
                    for (int o = start; o < end; o++)
                    {
                        // Two passes: the mean, then the sum of squared deviations from it (no cancellation).
                        int b = l.BaseOffset(o);
                        var s = new SumVisitor<T>(xs);
                        l.VisitRows(b, ref s);
                        var d = new SquaredDeviationVisitor<T>(xs, s.Sum / l.Count);
                        l.VisitRows(b, ref d);
                        ys[yOff + o] = T.CreateTruncating(d.Sum / divisor);
                    }
                });
                break;
            }
            case Op.ArgMax:
            {
                long[] ys = y.Data<long>();
                CpuParallel.For(l.Outputs, l.Count, (start, end) =>
                {
                    for (int o = start; o < end; o++)
                    {
                        var v = new ArgMaxVisitor<T>(xs);
                        l.VisitRows(l.BaseOffset(o), ref v);
                        ys[yOff + o] = v.Index;
                    }
                });
                break;
            }
            default: throw new NotSupportedException($"{op} is not a reduction");
        }
    }

    // ---- row visitors: one output's reduction ----

    /// <summary>Sum in double (floats) or long (integers).</summary>
    private struct SumVisitor<T>(T[] x) : IRowVisitor where T : unmanaged, INumber<T>
    {
        public double Sum;
        public long IntSum;

        public void Row(int offset, int n, int stride)
        {
            if (n == 0) return;
            if (typeof(T) == typeof(float) && stride == 1) Sum += FloatSum(((float[])(object)x).AsSpan(offset, n));
            else if (typeof(T) == typeof(double) && stride == 1) Sum += TensorPrimitives.Sum(((double[])(object)x).AsSpan(offset, n));
            else if (typeof(T) == typeof(float) || typeof(T) == typeof(double))
                for (int i = 0; i < n; i++) Sum += double.CreateTruncating(x[offset + i * stride]);
            else
                for (int i = 0; i < n; i++) IntSum += long.CreateTruncating(x[offset + i * stride]);
        }
    }

    /// <summary>
    /// A float32 run summed in double: SIMD lanes widened to double, four accumulators for throughput.
    /// (A float32 accumulator, even TensorPrimitives.Sum's lane-wise one, loses ~6e-7 relative over 1024 equal values.)
    /// </summary>
    private static double FloatSum(ReadOnlySpan<float> x)
    {
        int i = 0;
        double s = 0;
        if (Vector256.IsHardwareAccelerated && x.Length >= 16)
        {
            ref float start = ref MemoryMarshal.GetReference(x);
            Vector256<double> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            for (; i <= x.Length - 16; i += 16)
            {
                var (a, b) = Vector256.Widen(Vector256.LoadUnsafe(ref start, (nuint)i));
                var (c, d) = Vector256.Widen(Vector256.LoadUnsafe(ref start, (nuint)(i + 8)));
                acc0 += a;
                acc1 += b;
                acc2 += c;
                acc3 += d;
            }
            s = Vector256.Sum(acc0 + acc1 + (acc2 + acc3));
        }
        for (; i < x.Length; i++) s += x[i];
        return s;
    }

    private struct SquaredDeviationVisitor<T>(T[] x, double mean) : IRowVisitor where T : unmanaged, INumber<T>
    {
        public double Sum;

        public void Row(int offset, int n, int stride)
        {
            for (int i = 0; i < n; i++)
            {
                double d = double.CreateTruncating(x[offset + i * stride]) - mean;
                Sum += d * d;
            }
        }
    }

    /// <summary>Max or min; a NaN anywhere makes the result NaN (torch.max / torch.min).</summary>
    private struct MinMaxVisitor<T>(T[] x, bool max) : IRowVisitor where T : unmanaged, INumber<T>
    {
        public T Result;
        private bool _started;

        public void Row(int offset, int n, int stride)
        {
            if (n == 0) return;
            T m;
            if (stride == 1)
            {
                var span = x.AsSpan(offset, n);
                m = max ? TensorPrimitives.Max<T>(span) : TensorPrimitives.Min<T>(span);
            }
            else
            {
                m = x[offset];
                for (int i = 1; i < n; i++) m = max ? T.Max(m, x[offset + i * stride]) : T.Min(m, x[offset + i * stride]);
            }
            Result = !_started ? m : max ? T.Max(Result, m) : T.Min(Result, m);
            _started = true;
        }
    }

    /// <summary>Index of the first maximum; a NaN counts as larger than everything (the first NaN wins), as torch.argmax.</summary>
    private struct ArgMaxVisitor<T>(T[] x) : IRowVisitor where T : unmanaged, INumber<T>
    {
        public long Index;

        public void Row(int offset, int n, int stride)
        {
            if (n == 0) return;
            T best = x[offset];
            int bestIndex = 0;
            for (int i = 1; i < n && !T.IsNaN(best); i++)
            {
                T v = x[offset + i * stride];
                if (v > best || T.IsNaN(v))
                {
                    best = v;
                    bestIndex = i;
                }
            }
            Index = bestIndex;
        }
    }

    // ---- column loops: rows of x accumulated into blocks of outputs ----

    private const int ColumnBlock = 256;

    /// <summary>
    /// Calls <paramref name="block"/>(outputStart, length, xBase) for blocks of at most <see cref="ColumnBlock"/>
    /// consecutive outputs that lie along the contiguous kept axis, in parallel.
    /// </summary>
    private static void ForColumnBlocks(ReduceLayout l, Action<int, int, int> block)
    {
        int inner = l.KeptInnerSize;
        int blocksPerRow = (inner + ColumnBlock - 1) / ColumnBlock;
        int blocks = l.Outputs / inner * blocksPerRow;
        CpuParallel.For(blocks, (long)l.Count * Math.Min(inner, ColumnBlock), (start, end) =>
        {
            for (int bIdx = start; bIdx < end; bIdx++)
            {
                int row = bIdx / blocksPerRow, c0 = bIdx % blocksPerRow * ColumnBlock;
                int o = row * inner + c0;
                block(o, Math.Min(ColumnBlock, inner - c0), l.BaseOffset(o));
            }
        });
    }

    private static void ColumnSum<T>(T[] xs, T[] ys, int yOff, ReduceLayout l, double scale) where T : unmanaged, INumber<T>
    {
        ForColumnBlocks(l, (o, len, xBase) =>
        {
            var v = new ColumnSumVisitor<T>(xs, new double[len]);
            l.VisitRows(xBase, ref v);
            for (int j = 0; j < len; j++) ys[yOff + o + j] = T.CreateTruncating(v.Acc[j] * scale);
        });
    }

    private readonly struct ColumnSumVisitor<T>(T[] x, double[] acc) : IRowVisitor where T : unmanaged, INumber<T>
    {
        public double[] Acc => acc;

        public void Row(int offset, int n, int stride)
        {
            for (int i = 0; i < n; i++)
            {
                int at = offset + i * stride;
                if (typeof(T) == typeof(float)) AddWidened(((float[])(object)x).AsSpan(at, acc.Length), acc);
                else TensorPrimitives.Add(acc, ((double[])(object)x).AsSpan(at, acc.Length), acc);
            }
        }
    }

    /// <summary>acc += x, float32 lanes widened to double.</summary>
    private static void AddWidened(ReadOnlySpan<float> x, Span<double> acc)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= x.Length - 8; i += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Create(x.Slice(i, 8)));
                (Vector256.Create(acc.Slice(i, 4)) + lo).CopyTo(acc.Slice(i, 4));
                (Vector256.Create(acc.Slice(i + 4, 4)) + hi).CopyTo(acc.Slice(i + 4, 4));
            }
        }
        for (; i < x.Length; i++) acc[i] += x[i];
    }

    private static void ColumnMinMax<T>(T[] xs, T[] ys, int yOff, ReduceLayout l, bool max) where T : unmanaged, INumber<T>
    {
        ForColumnBlocks(l, (o, len, xBase) =>
        {
            var v = new ColumnMinMaxVisitor<T>(xs, ys.AsMemory(yOff + o, len), max);
            l.VisitRows(xBase, ref v);
        });
    }

    private struct ColumnMinMaxVisitor<T>(T[] x, Memory<T> acc, bool max) : IRowVisitor where T : unmanaged, INumber<T>
    {
        private bool _started;

        public void Row(int offset, int n, int stride)
        {
            var a = acc.Span;
            for (int i = 0; i < n; i++)
            {
                var row = x.AsSpan(offset + i * stride, a.Length);
                if (!_started) row.CopyTo(a);
                else if (max) TensorPrimitives.Max(a, row, a);
                else TensorPrimitives.Min(a, row, a);
                _started = true;
            }
        }
    }
}
