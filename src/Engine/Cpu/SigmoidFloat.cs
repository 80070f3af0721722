using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ManagedTensor.Cpu;

/// <summary>
/// Float32 sigmoid, SiLU and SiLU's gradient as one SIMD pass each (YOLOv8 puts a SiLU after every conv, so SiLU and
/// its gradient run on every activation of a training step; its loss takes the sigmoid of every class score). With e = exp(-x) and s = 1 / (1 + e) = sigmoid(x):
///   silu(x) = x s,    d/dx silu(x) = s (1 + x (1 - s)).
/// TensorPrimitives' Sigmoid then Multiply would be two passes over the tensor (four for the gradient), each of
/// which streams it through memory when it is larger than the cache. exp is <see cref="VectorExp"/> (clamped: for x
/// below -88 silu gives about x / 1.7e38 instead of -0, a difference below float's smallest normal).
/// </summary>
internal static class SigmoidFloat
{
    /// <summary>y = 1 / (1 + exp(-x)).</summary>
    public static void Sigmoid(ReadOnlySpan<float> x, Span<float> y)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float xr = ref MemoryMarshal.GetReference(x);
            ref float yr = ref MemoryMarshal.GetReference(y);
            for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
                (Vector256<float>.One / (Vector256<float>.One + VectorExp.Exp(-Vector256.LoadUnsafe(ref xr, (nuint)i)))).StoreUnsafe(ref yr, (nuint)i);
        }
        for (; i < x.Length; i++) y[i] = 1 / (1 + MathF.Exp(-x[i]));
    }

    /// <summary>y = x sigmoid(x).</summary>
    public static void Silu(ReadOnlySpan<float> x, Span<float> y)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float xr = ref MemoryMarshal.GetReference(x);
            ref float yr = ref MemoryMarshal.GetReference(y);
            for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var v = Vector256.LoadUnsafe(ref xr, (nuint)i);
                (v / (Vector256<float>.One + VectorExp.Exp(-v))).StoreUnsafe(ref yr, (nuint)i);
            }
        }
        for (; i < x.Length; i++) y[i] = x[i] / (1 + MathF.Exp(-x[i]));
    }

    /// <summary>dx = dy s (1 + x (1 - s)).</summary>
    public static void SiluBackward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float gr = ref MemoryMarshal.GetReference(dy);
            ref float xr = ref MemoryMarshal.GetReference(x);
            ref float dr = ref MemoryMarshal.GetReference(dx);
            var one = Vector256<float>.One;
            for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var v = Vector256.LoadUnsafe(ref xr, (nuint)i);
                var s = one / (one + VectorExp.Exp(-v));
                (Vector256.LoadUnsafe(ref gr, (nuint)i) * s * (one + v * (one - s))).StoreUnsafe(ref dr, (nuint)i);
            }
        }
        for (; i < x.Length; i++)
        {
            float s = 1 / (1 + MathF.Exp(-x[i]));
            dx[i] = dy[i] * s * (1 + x[i] * (1 - s));
        }
    }
}
