using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using ManagedTensor.Quant;

namespace ManagedTensor.Cpu;

/// <summary>
/// CPU kernels of the block formats: casts to and from them (decode, encode) and QMatMul, y = x W^T with W
/// in a block format. QMatMul encodes each activation row once in the format's dot type (Q8_0 for the
/// 32-value formats) and takes integer block dot products against W's rows, as llama.cpp does; formats
/// without such a dot product decode a tile of W's rows to float32 and dot there. Either way W is read as
/// it is stored, never expanded whole.
/// </summary>
internal static class CpuQuant
{
    /// <summary>A cast where either side is a block format; block-format sides must be contiguous whole blocks.</summary>
    public static void Copy(Tensor src, Tensor dst)
    {
        if (src.DType.IsQuantized()) RequireWholeBlocks(src, "copy");
        if (dst.DType.IsQuantized()) RequireWholeBlocks(dst, "copy");
        if (src.DType == dst.DType)
        {
            Bytes(src).CopyTo(Bytes(dst));
            return;
        }
        if (src.DType.IsQuantized())
        {
            // Decode into float32 (dst itself when it is a contiguous F32 tensor), then cast as any copy does.
            var f32 = dst.DType == DType.F32 && dst.IsContiguous ? dst : Tensor.Empty(src.Shape);
            Decode(src, f32.Span<float>());
            if (!ReferenceEquals(f32, dst)) CpuCopy.Copy(f32, dst);
            return;
        }
        var floats = src.DType == DType.F32 && src.IsContiguous ? src : Cast(src, DType.F32);
        Encode(floats.Span<float>(), dst);
    }

    private static Tensor Cast(Tensor src, DType dtype)
    {
        var t = Tensor.Empty(src.Shape, dtype);
        CpuCopy.Copy(src, t);
        return t;
    }

    /// <summary>The bytes of a contiguous block-format tensor.</summary>
    internal static Span<byte> Bytes(Tensor t) =>
        t.Data<byte>().AsSpan((int)t.DType.ByteCount(t.Offset), (int)t.DType.ByteCount(t.Numel));

    internal static void RequireWholeBlocks(Tensor t, string op)
    {
        var f = BlockFormats.Get(t.DType);
        if (!t.IsContiguous || t.Offset % f.BlockSize != 0)
            throw new NotSupportedException($"{op}: {t.Describe()} is a strided view of a block format; block formats are read whole rows of blocks at a time");
    }

    /// <summary>Decodes a contiguous block-format tensor into <paramref name="dst"/>, rows of blocks split across threads.</summary>
    private static void Decode(Tensor src, Span<float> dst)
    {
        var f = BlockFormats.Get(src.DType);
        var bytes = src.Data<byte>();
        int byteOffset = (int)f.ByteCount(src.Offset), blocks = src.Numel / f.BlockSize;
        if (blocks == 0) return;
        unsafe
        {
            fixed (float* p = dst)
            {
                var ptr = (IntPtr)p;
                CpuParallel.For(blocks, f.BlockSize, (b0, b1) =>
                {
                    var d = new Span<float>((float*)ptr + (long)b0 * f.BlockSize, (b1 - b0) * f.BlockSize);
                    f.Decode(bytes.AsSpan(byteOffset + b0 * f.BlockBytes, (b1 - b0) * f.BlockBytes), d);
                });
            }
        }
    }

    private static void Encode(ReadOnlySpan<float> src, Tensor dst)
    {
        var f = BlockFormats.Get(dst.DType);
        var encode = f.Encode ?? throw new NotSupportedException($"encoding to {f.Name} is not supported (it can be read, not written)");
        encode(src, Bytes(dst));
    }

    // ---- QMatMul ----

    /// <summary>
    /// y (M, N) = x (M, K) W^T for F32 x and y, W (N, K) in a block format, in one of two ways:
    /// - few rows (decode, M &lt; <see cref="GemmRows"/>): x's rows are encoded once in the format's dot type (Q8_0, Q8_K;
    ///   NF4's is F32, x as it is) and threads take contiguous ranges of W's rows for integer block dot products, so W is
    ///   read from memory once, in its blocks: the bandwidth-bound GEMV;
    /// - many rows (prefill): tiles of W's rows are decoded to float32 (threads splitting the tile) and multiplied by
    ///   the packed SGEMM, whose register blocking reuses each decoded weight for many rows of x. Decoding costs about
    ///   as much as M = 1 of the integer path, so it pays from a few rows on, and x is not rounded to 8 bits.
    /// </summary>
    public static void QMatMul(Tensor x, Tensor w, Tensor y)
    {
        RequireWholeBlocks(w, "QMatMul");
        var f = BlockFormats.Get(w.DType);
        int n = w.Shape[0], k = w.Shape[1], m = x.Numel / Math.Max(k, 1);
        var xs = x.Data<float>().AsMemory(x.Offset, m * k);
        var ys = y.Data<float>().AsMemory(y.Offset, m * n);
        var wb = w.Data<byte>().AsMemory((int)f.ByteCount(w.Offset), (int)f.ByteCount((long)n * k));
        Run(f, wb, n, k, xs, m, ys);
    }

    /// <summary>The kernel of <see cref="QMatMul"/> over raw rows: W (n rows of k values in format f), x (m, k), y (m, n).</summary>
    internal static void Run(BlockFormat f, ReadOnlyMemory<byte> wb, int n, int k, ReadOnlyMemory<float> xs, int m, Memory<float> ys)
    {
        int rowBytes = (int)f.ByteCount(k), blocks = k / f.BlockSize;
        if (m >= GemmRows || f.Dot is null)
        {
            DecodedGemm(f, wb, n, k, xs, m, ys);
            return;
        }
        var dot = f.Dot;
        var (xq, xRowBytes) = EncodeActivations(f, xs, m, k);
        CpuParallel.For(n, (long)k * m, (n0, n1) =>
        {
            var ySpan = ys.Span;
            var wSpan = wb.Span;
            var xSpan = xq.Span;
            for (int j = n0; j < n1; j++)
            {
                var wRow = wSpan.Slice(j * rowBytes, rowBytes);
                for (int r = 0; r < m; r++) ySpan[r * n + j] = dot(wRow, xSpan.Slice(r * xRowBytes, xRowBytes), blocks);
            }
        });
    }

    /// <summary>From this many rows of x on, QMatMul decodes W by tiles and runs the SGEMM (see <see cref="QMatMul"/>).</summary>
    internal const int GemmRows = 16;

    /// <summary>y = x W^T with W decoded a tile of rows at a time (about 4 MiB of float32) into the SGEMM's B operand.</summary>
    private static void DecodedGemm(BlockFormat f, ReadOnlyMemory<byte> wb, int n, int k, ReadOnlyMemory<float> xs, int m, Memory<float> ys)
    {
        int rowBytes = (int)f.ByteCount(k);
        int tile = Math.Max(1, Math.Min(n, (1 << 20) / Math.Max(k, 1)));
        var buf = new float[(long)tile * k];
        for (int j0 = 0; j0 < n; j0 += tile)
        {
            int rows = Math.Min(tile, n - j0);
            CpuParallel.For(rows, k, (r0, r1) => f.Decode(wb.Span.Slice((j0 + r0) * rowBytes, (r1 - r0) * rowBytes), buf.AsSpan(r0 * k, (r1 - r0) * k)));
            Gemm.Run(false, true, m, rows, k, 1f, xs.Span, k, buf.AsSpan(0, rows * k), k, 0f, ys.Span[j0..], n); // columns j0..j0+rows of y
        }
    }

    /// <summary>x's m rows in the format's dot type (Q8_0, Q8_K), threads taking rows; float32 dot types use x's bytes as they are.</summary>
    private static (ReadOnlyMemory<byte> Rows, int RowBytes) EncodeActivations(BlockFormat f, ReadOnlyMemory<float> xs, int m, int k)
    {
        if (f.DotType == DType.F32)
        {
            var floats = MemoryMarshal.TryGetArray(xs, out var seg) ? seg : new ArraySegment<float>(xs.ToArray());
            var bytes = new byte[(long)m * k * 4]; // a copy: Memory<float> cannot be viewed as Memory<byte>
            MemoryMarshal.AsBytes(floats.AsSpan()).CopyTo(bytes);
            return (bytes, k * 4);
        }
        var dotFormat = BlockFormats.Get(f.DotType!.Value);
        int xRowBytes = (int)dotFormat.ByteCount(k);
        var xq = new byte[(long)m * xRowBytes];
        CpuParallel.For(m, k, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++) dotFormat.Encode!(xs.Span.Slice(r * k, k), xq.AsSpan(r * xRowBytes, xRowBytes));
        });
        return (xq, xRowBytes);
    }
}
