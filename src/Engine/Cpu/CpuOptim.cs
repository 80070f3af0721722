using System.Numerics;

namespace ManagedTensor.Cpu;

/// <summary>
/// One fused AdamW step (Loshchilov and Hutter, "Decoupled weight decay regularization"), in place,
/// with the operations in the order of torch.optim.AdamW's single-tensor path (so rounding matches):
///   p = p * (1 - lr wd)                              decoupled weight decay, applied first
///   m = m + (1 - b1) (g - m)                         torch's lerp(m, g, 1 - b1)
///   v = v b2 + (1 - b2) g g
///   p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
/// The scalar factors are computed in double and rounded to the tensor's type once, as PyTorch does.
/// </summary>
internal static class CpuOptim
{
    public static void AdamWStep(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWAttrs a)
    {
        foreach (var t in new[] { grad, m, v })
        {
            if (!t.Shape.AsSpan().SequenceEqual(param.Shape) || t.DType != param.DType)
                throw new ArgumentException($"AdamW: {t.Describe()} does not match the parameter {param.Describe()}");
        }
        foreach (var t in new[] { param, m, v })
            if (!t.IsContiguous) throw new ArgumentException($"AdamW: state tensor {t.Describe()} must be contiguous");
        if (a.Step < 1) throw new ArgumentOutOfRangeException(nameof(a), a.Step, "AdamW: step is 1-based");
        if (!grad.IsContiguous)
        {
            var dense = Tensor.Empty(grad.Shape, grad.DType);
            CpuCopy.Copy(grad, dense);
            grad = dense;
        }
        switch (param.DType)
        {
            case DType.F32: Step<float>(param, grad, m, v, a); break;
            case DType.F64: Step<double>(param, grad, m, v, a); break;
            default: throw new NotSupportedException($"AdamW on the CPU needs F32 or F64 parameters, got {param.Describe()}");
        }
    }

    private static void Step<T>(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWAttrs a) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var f = new AdamWFactors<T>(a);
        T[] p = param.Elements<T>(), g = grad.Elements<T>(), ms = m.Elements<T>(), vs = v.Elements<T>();
        int po = param.Offset, go = grad.Offset, mo = m.Offset, vo = v.Offset;
        CpuParallel.For(param.Numel, 8, (start, end) =>
            Range(f, p.AsSpan(po + start, end - start), g.AsSpan(go + start, end - start),
                ms.AsSpan(mo + start, end - start), vs.AsSpan(vo + start, end - start)));
    }

    private static void Range<T>(in AdamWFactors<T> f, Span<T> p, ReadOnlySpan<T> g, Span<T> m, Span<T> v) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && f.LerpFromStart)
        {
            var decay = new Vector<T>(f.Decay);
            var w1 = new Vector<T>(f.W1);
            var b2 = new Vector<T>(f.B2);
            var oneMinusB2 = new Vector<T>(f.OneMinusB2);
            var stepSize = new Vector<T>(f.StepSize);
            var bc2Sqrt = new Vector<T>(f.Bc2Sqrt);
            var eps = new Vector<T>(f.Eps);
            for (; i <= p.Length - Vector<T>.Count; i += Vector<T>.Count)
            {
                var gi = new Vector<T>(g[i..]);
                var pi = new Vector<T>(p[i..]) * decay;
                var mi = new Vector<T>(m[i..]);
                mi += w1 * (gi - mi);
                var vi = new Vector<T>(v[i..]) * b2 + oneMinusB2 * gi * gi;
                var denom = Vector.SquareRoot(vi) / bc2Sqrt + eps;
                pi -= stepSize * mi / denom;
                pi.CopyTo(p[i..]);
                mi.CopyTo(m[i..]);
                vi.CopyTo(v[i..]);
            }
        }
        for (; i < p.Length; i++) f.Update(ref p[i], g[i], ref m[i], ref v[i]);
    }
}

/// <summary>
/// One AdamW step's scalars, computed in double and rounded to T once (as PyTorch), and the per-element
/// update in torch's order. The GPU kernel (Gpu/Kernels/OptimKernels.cs) runs the same <see cref="Update"/>.
/// </summary>
internal readonly struct AdamWFactors<T>(AdamWAttrs a) where T : IFloatingPointIeee754<T>
{
    public readonly T Decay = T.CreateTruncating(1 - a.Lr * a.WeightDecay);
    public readonly T W1 = T.CreateTruncating(1 - a.Beta1);                              // lerp weight
    public readonly T B2 = T.CreateTruncating(a.Beta2);
    public readonly T OneMinusB2 = T.CreateTruncating(1 - a.Beta2);
    public readonly T StepSize = T.CreateTruncating(a.Lr / (1 - Math.Pow(a.Beta1, a.Step)));
    public readonly T Bc2Sqrt = T.CreateTruncating(Math.Sqrt(1 - Math.Pow(a.Beta2, a.Step)));
    public readonly T Eps = T.CreateTruncating(a.Eps);
    private readonly int _lerpFromStart = 1 - a.Beta1 < 0.5 ? 1 : 0;                     // torch's lerp picks its form by weight

    // (an int field, not a bool: ILGPU rejects bool fields in kernel parameters)
    public bool LerpFromStart => _lerpFromStart != 0;

    /// <summary>p = p (1 - lr wd); m = lerp(m, g, 1 - b1); v = v b2 + (1 - b2) g^2; p -= step m / (sqrt(v) / sqrt(1 - b2^t) + eps).</summary>
    public void Update(ref T p, T g, ref T m, ref T v)
    {
        T pi = p * Decay;
        T mi = LerpFromStart ? m + W1 * (g - m) : g - (g - m) * (T.One - W1);
        T vi = v * B2 + OneMinusB2 * g * g;
        T denom = T.Sqrt(vi) / Bc2Sqrt + Eps;
        p = pi - StepSize * mi / denom;
        m = mi;
        v = vi;
    }
}
