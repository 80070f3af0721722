namespace ManagedTensor.Cpu;

/// <summary>Moves between a strided row of an array and a dense span (the elementwise kernels' strided fast path).</summary>
internal static class Strided
{
    /// <summary>dst[i] = src[offset + i * stride].</summary>
    public static void Gather<T>(T[] src, int offset, int stride, Span<T> dst)
    {
        for (int i = 0, o = offset; i < dst.Length; i++, o += stride) dst[i] = src[o];
    }

    /// <summary>dst[offset + i * stride] = src[i].</summary>
    public static void Scatter<T>(ReadOnlySpan<T> src, T[] dst, int offset, int stride)
    {
        for (int i = 0, o = offset; i < src.Length; i++, o += stride) dst[o] = src[i];
    }
}
