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
///            axis 0 of (N, C), a bias gradient): whole rows of x are streamed into a block of outputs with
///            vector adds. Parallel over blocks of outputs and over ranges of the reduced rows.
/// Float sums accumulate in double (float32 lanes are widened to double inside the SIMD loop), so a float32
/// sum of millions of elements is correct to float32 rounding.
/// F16 and BF16 are reduced in float32; integer sums wrap in their own type, as the output does.
/// </summary>
internal static class CpuReduce
{
    public static void Reduce(Op op, Tensor x, Tensor y, ReduceAttrs a)
    {
        ReduceLayout.CheckOperands(op, x, y, a);

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
            if (n == 0) return;
            if (typeof(T) == typeof(float) && stride == 1)
            {
                Sum += FloatSquaredDeviations(((float[])(object)x).AsSpan(offset, n), mean);
                return;
            }
            for (int i = 0; i < n; i++)
            {
                double d = double.CreateTruncating(x[offset + i * stride]) - mean;
                Sum += d * d;
            }
        }
    }

    /// <summary>sum (x_i - mean)^2 over a float32 run, in double SIMD lanes.</summary>
    private static double FloatSquaredDeviations(ReadOnlySpan<float> x, double mean)
    {
        int i = 0;
        double s = 0;
        if (Vector256.IsHardwareAccelerated && x.Length >= 8)
        {
            ref float start = ref MemoryMarshal.GetReference(x);
            var m = Vector256.Create(mean);
            Vector256<double> acc0 = default, acc1 = default;
            for (; i <= x.Length - 8; i += 8)
            {
                var (a, b) = Vector256.Widen(Vector256.LoadUnsafe(ref start, (nuint)i));
                a -= m;
                b -= m;
                acc0 += a * a;
                acc1 += b * b;
            }
            s = Vector256.Sum(acc0 + acc1);
        }
        for (; i < x.Length; i++)
        {
            double d = x[i] - mean;
            s += d * d;
        }
        return s;
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

    /// <summary>
    /// How a column reduction is cut into parallel units. A block is up to <see cref="ColumnWidth"/>
    /// consecutive outputs along the contiguous kept axis; its reduced rows are split into
    /// <see cref="Splits"/> ranges so that even a single block, (N, C) summed over N, keeps every core busy.
    /// Each unit streams whole rows of x (contiguous reads) into its own partial accumulator; partials are
    /// then combined in split order.
    /// </summary>
    private sealed class ColumnPlan
    {
        public const int ColumnWidth = 4096;

        public ColumnPlan(ReduceLayout l)
        {
            Layout = l;
            Width = Math.Min(l.KeptInnerSize, ColumnWidth);
            BlocksPerRow = (l.KeptInnerSize + Width - 1) / Width;
            Blocks = l.Outputs / l.KeptInnerSize * BlocksPerRow;
            int wanted = (Environment.ProcessorCount + Blocks - 1) / Blocks;
            Splits = Math.Max(1, Math.Min(wanted, l.Count / 64));   // at least 64 rows per split
            RowOffsets = new int[l.Count];
            var collect = new OffsetCollector(RowOffsets);
            l.VisitRows(0, ref collect);
        }

        public ReduceLayout Layout { get; }
        public int Width { get; }
        public int BlocksPerRow { get; }
        public int Blocks { get; }
        public int Splits { get; }

        /// <summary>Offset (from a block's base) of every reduced row, in reduction order.</summary>
        public int[] RowOffsets { get; }

        /// <summary>Block b's first output and length, and the x offset of its first element.</summary>
        public (int Output, int Length, int XBase) Block(int b)
        {
            int inner = Layout.KeptInnerSize;
            int o = b / BlocksPerRow * inner + b % BlocksPerRow * Width;
            return (o, Math.Min(Width, inner - b % BlocksPerRow * Width), Layout.BaseOffset(o));
        }

        /// <summary>The reduced rows [start, end) of split s.</summary>
        public (int Start, int End) Rows(int s) => (RowOffsets.Length * s / Splits, RowOffsets.Length * (s + 1) / Splits);
    }

    private struct OffsetCollector(int[] offsets) : IRowVisitor
    {
        private int _count;

        public void Row(int offset, int n, int stride)
        {
            for (int i = 0; i < n; i++) offsets[_count++] = offset + i * stride;
        }
    }

    private static void ColumnSum<T>(T[] xs, T[] ys, int yOff, ReduceLayout l, double scale) where T : unmanaged, INumber<T>
    {
        var plan = new ColumnPlan(l);
        var partial = new double[plan.Blocks * plan.Splits][];
        CpuParallel.For(partial.Length, (long)plan.Width * l.Count / plan.Splits, (start, end) =>
        {
            for (int u = start; u < end; u++)
            {
                var (_, len, xBase) = plan.Block(u / plan.Splits);
                var (r0, r1) = plan.Rows(u % plan.Splits);
                var acc = new double[len];
                for (int r = r0; r < r1; r++)
                {
                    int at = xBase + plan.RowOffsets[r];
                    if (typeof(T) == typeof(float)) AddWidened(((float[])(object)xs).AsSpan(at, len), acc);
                    else TensorPrimitives.Add(acc, ((double[])(object)xs).AsSpan(at, len), acc);
                }
                partial[u] = acc;
            }
        });
        for (int b = 0; b < plan.Blocks; b++)
        {
            var (o, len, _) = plan.Block(b);
            var acc = partial[b * plan.Splits];
            for (int s = 1; s < plan.Splits; s++) TensorPrimitives.Add(acc, partial[b * plan.Splits + s], acc);
            for (int j = 0; j < len; j++) ys[yOff + o + j] = T.CreateTruncating(acc[j] * scale);
        }
    }

    /// <summary>acc += x, float32 lanes widened to double.</summary>
    private static void AddWidened(ReadOnlySpan<float> x, Span<double> acc)
    {
        if (acc.Length < x.Length) throw new ArgumentException("accumulator too short");
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float src = ref MemoryMarshal.GetReference(x);
            ref double dst = ref MemoryMarshal.GetReference(acc);
            for (; i <= x.Length - 8; i += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref src, (nuint)i));
                (Vector256.LoadUnsafe(ref dst, (nuint)i) + lo).StoreUnsafe(ref dst, (nuint)i);
                (Vector256.LoadUnsafe(ref dst, (nuint)(i + 4)) + hi).StoreUnsafe(ref dst, (nuint)(i + 4));
            }
        }
        for (; i < x.Length; i++) acc[i] += x[i];
    }

    private static void ColumnMinMax<T>(T[] xs, T[] ys, int yOff, ReduceLayout l, bool max) where T : unmanaged, INumber<T>
    {
        var plan = new ColumnPlan(l);
        var partial = new T[plan.Blocks * plan.Splits][];
        CpuParallel.For(partial.Length, (long)plan.Width * l.Count / plan.Splits, (start, end) =>
        {
            for (int u = start; u < end; u++)
            {
                var (_, len, xBase) = plan.Block(u / plan.Splits);
                var (r0, r1) = plan.Rows(u % plan.Splits);
                var acc = xs.AsSpan(xBase + plan.RowOffsets[r0], len).ToArray();
                for (int r = r0 + 1; r < r1; r++) MinMaxInto(acc, xs.AsSpan(xBase + plan.RowOffsets[r], len), max);
                partial[u] = acc;
            }
        });
        for (int b = 0; b < plan.Blocks; b++)
        {
            var (o, len, _) = plan.Block(b);
            var acc = partial[b * plan.Splits];
            for (int s = 1; s < plan.Splits; s++) MinMaxInto(acc, partial[b * plan.Splits + s], max);
            acc.AsSpan(0, len).CopyTo(ys.AsSpan(yOff + o, len));
        }
    }

    /// <summary>acc = max(acc, row) or min(acc, row) elementwise, NaN propagating.</summary>
    private static void MinMaxInto<T>(T[] acc, ReadOnlySpan<T> row, bool max) where T : INumber<T>
    {
        if (max) TensorPrimitives.Max(acc, row, acc);
        else TensorPrimitives.Min(acc, row, acc);
    }
}
