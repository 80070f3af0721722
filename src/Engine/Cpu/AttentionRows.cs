using System.Numerics;
using System.Runtime.CompilerServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// The per-row steps of CPU attention on one score-tile row (tens of elements), each one fused SIMD
/// pass. TensorPrimitives would need two or three calls per step, and at this length the per-call
/// dispatch costs as much as the arithmetic. Fully optimized at once (see <see cref="TileGemm"/>).
/// </summary>
internal static class AttentionRows
{
    /// <summary>row *= scale; returns max(row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static T ScaleMax<T>(Span<T> row, T scale) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector<T>.Count, j = 0;
        T max = T.NegativeInfinity;
        if (row.Length >= w)
        {
            var vs = new Vector<T>(scale);
            var vmax = new Vector<T>(T.NegativeInfinity);
            for (; j + w <= row.Length; j += w)
            {
                var x = new Vector<T>(row[j..]) * vs;
                x.CopyTo(row[j..]);
                vmax = Vector.Max(vmax, x);
            }
            for (int c = 0; c < w; c++) max = T.Max(max, vmax[c]);
        }
        for (; j < row.Length; j++) max = T.Max(max, row[j] *= scale);
        return max;
    }

    /// <summary>row = exp(row - shift); returns sum(row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static T ExpSum<T>(Span<T> row, T shift) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector<T>.Count, j = 0;
        T sum = T.Zero;
        if (row.Length >= w)
        {
            var vshift = new Vector<T>(shift);
            var vsum = Vector<T>.Zero;
            for (; j + w <= row.Length; j += w)
            {
                var e = Exp(new Vector<T>(row[j..]) - vshift);
                e.CopyTo(row[j..]);
                vsum += e;
            }
            sum = Vector.Sum(vsum);
        }
        for (; j < row.Length; j++) sum += row[j] = T.Exp(row[j] - shift);
        return sum;
    }

    /// <summary>row = exp(row * scale - shift) (the backward's P from the saved lse).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ScaleExp<T>(Span<T> row, T scale, T shift) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector<T>.Count, j = 0;
        var vs = new Vector<T>(scale);
        var vshift = new Vector<T>(shift);
        for (; j + w <= row.Length; j += w) Exp(new Vector<T>(row[j..]) * vs - vshift).CopyTo(row[j..]);
        for (; j < row.Length; j++) row[j] = T.Exp(row[j] * scale - shift);
    }

    /// <summary>x *= c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scale<T>(Span<T> x, T c) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector<T>.Count, j = 0;
        var vc = new Vector<T>(c);
        for (; j + w <= x.Length; j += w) (new Vector<T>(x[j..]) * vc).CopyTo(x[j..]);
        for (; j < x.Length; j++) x[j] *= c;
    }

    /// <summary>dst = a * b elementwise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> dst) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector<T>.Count, j = 0;
        for (; j + w <= dst.Length; j += w) (new Vector<T>(a[j..]) * new Vector<T>(b[j..])).CopyTo(dst[j..]);
        for (; j < dst.Length; j++) dst[j] = a[j] * b[j];
    }

    /// <summary>dp = p * (dp - delta): dS of a row from dP, P and Di.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SoftmaxGrad<T>(Span<T> dp, ReadOnlySpan<T> p, T delta) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector<T>.Count, j = 0;
        var vd = new Vector<T>(delta);
        for (; j + w <= dp.Length; j += w) (new Vector<T>(p[j..]) * (new Vector<T>(dp[j..]) - vd)).CopyTo(dp[j..]);
        for (; j < dp.Length; j++) dp[j] = p[j] * (dp[j] - delta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<T> Exp<T>(Vector<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) return Vector.Exp(x.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector.Exp(x.As<T, double>()).As<double, T>();
        throw new NotSupportedException($"attention rows of {typeof(T).Name}");
    }
}
