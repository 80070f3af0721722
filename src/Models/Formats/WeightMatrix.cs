using System.Numerics.Tensors;
using ManagedTensor.Cpu;
using ManagedTensor.Quant;

namespace ManagedTensor.Models.Formats;

/// <summary>
/// A (rows, cols) weight matrix in its stored encoding, multiplied by a vector without materializing float32
/// weights: y = W x, y (rows), x (cols). F32 rows are dotted directly; F16 and BF16 rows are decoded one row at a
/// time into a float buffer and dotted; block formats (the engine's table, src/Engine/Quant) encode x once in their
/// dot type (Q8_0, Q8_K) and take integer block dot products as ggml does.
/// Rows are split across threads when the matrix is large enough to pay for it.
/// </summary>
public sealed class WeightMatrix
{
    public int Rows { get; }
    public int Cols { get; }
    public GgmlType Type { get; }

    private readonly float[]? _f32;   // (rows, cols) when Type is F32
    private readonly byte[]? _raw;    // rows * RowBytes encoded bytes otherwise
    public int RowBytes { get; }

    private WeightMatrix(int rows, int cols, GgmlType type, float[]? f32, byte[]? raw)
    {
        Rows = rows; Cols = cols; Type = type; _f32 = f32; _raw = raw;
        RowBytes = (int)GgmlTypes.ByteCount(type, cols);
    }

    /// <summary>A float32 matrix over <paramref name="data"/> (rows * cols, row-major; not copied).</summary>
    public static WeightMatrix FromF32(float[] data, int rows, int cols)
    {
        if (data.Length != (long)rows * cols) throw new ArgumentException($"F32 matrix ({rows}, {cols}) needs {(long)rows * cols} values, got {data.Length}");
        return new WeightMatrix(rows, cols, GgmlType.F32, data, null);
    }

    /// <summary>A matrix over encoded bytes of <paramref name="type"/> (F32 bytes are decoded to a float array).</summary>
    public static WeightMatrix FromEncoded(GgmlType type, byte[] raw, int rows, int cols)
    {
        long need = rows * GgmlTypes.ByteCount(type, cols);
        if (raw.Length != need) throw new ArgumentException($"{type} matrix ({rows}, {cols}) needs {need} bytes, got {raw.Length}");
        if (type == GgmlType.F32)
        {
            var f = new float[(long)rows * cols];
            GgmlTypes.Dequantize(type, raw, f);
            return FromF32(f, rows, cols);
        }
        return new WeightMatrix(rows, cols, type, null, raw);
    }

    /// <summary>Encodes float32 weights as <paramref name="type"/> (F32 keeps the array).</summary>
    public static WeightMatrix Encode(float[] data, int rows, int cols, GgmlType type) =>
        type == GgmlType.F32 ? FromF32(data, rows, cols) : FromEncoded(type, GgmlTypes.Quantize(type, data), rows, cols);

    /// <summary>Row <paramref name="r"/> decoded to float32 (used for embedding lookups).</summary>
    public void ReadRow(int r, Span<float> dst)
    {
        if (_f32 is not null) _f32.AsSpan(r * Cols, Cols).CopyTo(dst);
        else GgmlTypes.Dequantize(Type, _raw.AsSpan(r * RowBytes, RowBytes), dst[..Cols]);
    }

    /// <summary>The whole matrix decoded to float32 (rows * cols).</summary>
    public float[] ToF32()
    {
        if (_f32 is not null) return _f32;
        var f = new float[(long)Rows * Cols];
        for (int r = 0; r < Rows; r++) ReadRow(r, f.AsSpan(r * Cols, Cols));
        return f;
    }

    /// <summary>The stored bytes (for writers); F32 matrices are encoded on the fly.</summary>
    public byte[] EncodedBytes() => _raw ?? GgmlTypes.Quantize(GgmlType.F32, _f32!);

    public long ByteSize => _raw?.LongLength ?? _f32!.LongLength * 4;

    /// <summary>y = W x.  x (Cols), y (Rows).</summary>
    public void MatVec(ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length < Cols || y.Length < Rows) throw new ArgumentException($"MatVec: W ({Rows}, {Cols}) with x of {x.Length} into y of {y.Length}");
        byte[] xq = [];
        if (Format is { Dot: not null } f)
        {
            if (f.DotType == DType.F32) xq = System.Runtime.InteropServices.MemoryMarshal.AsBytes(x[..Cols]).ToArray();
            else
            {
                var dotFormat = BlockFormats.Get(f.DotType!.Value);
                xq = new byte[dotFormat.ByteCount(Cols)];
                dotFormat.Encode!(x[..Cols], xq);
            }
        }
        // About 64k multiply-adds per task: small matrices stay on the calling thread.
        int chunk = Math.Max(1, 65536 / Math.Max(1, Cols));
        int tasks = (Rows + chunk - 1) / chunk;
        if (tasks == 1) { RowRange(0, Rows, x, xq, y); return; }
        float[] xs = x[..Cols].ToArray(), ys = new float[Rows];
        Parallel.For(0, tasks, t => RowRange(t * chunk, Math.Min(Rows, (t + 1) * chunk), xs, xq, ys));
        ys.CopyTo(y);
    }

    /// <summary>
    /// Y = X W^T for T rows at once (prefill): X (T, Cols), Y (T, Rows), one SGEMM. Encoded weights are decoded a tile of
    /// rows at a time into a float32 buffer and multiplied there, so the full float32 matrix never exists.
    /// </summary>
    public void MatMul(ReadOnlySpan<float> x, Span<float> y, int T)
    {
        if (x.Length < T * Cols || y.Length < T * Rows) throw new ArgumentException($"MatMul: W ({Rows}, {Cols}) with X of {x.Length} into Y of {y.Length} for {T} rows");
        if (_f32 is not null)
        {
            Gemm.Run(false, true, T, Rows, Cols, 1f, x, Cols, _f32, Cols, 0f, y, Rows);
            return;
        }
        if (T < 4)
        {
            // Decoding every weight costs about as much as a matrix-vector product: for a few rows, run those instead.
            for (int t = 0; t < T; t++) MatVec(x.Slice(t * Cols, Cols), y.Slice(t * Rows, Rows));
            return;
        }
        int tile = Math.Max(1, Math.Min(Rows, (1 << 20) / Cols));            // about 4 MiB of decoded weights
        var buf = new float[tile * Cols];
        for (int r0 = 0; r0 < Rows; r0 += tile)
        {
            int n = Math.Min(tile, Rows - r0);
            GgmlTypes.Dequantize(Type, _raw.AsSpan(r0 * RowBytes, n * RowBytes), buf.AsSpan(0, n * Cols));
            Gemm.Run(false, true, T, n, Cols, 1f, x, Cols, buf, Cols, 0f, y[r0..], Rows); // columns r0..r0+n of Y
        }
    }

    /// <summary>The engine's block format of <see cref="Type"/> (null for F32, F16, BF16).</summary>
    private BlockFormat? Format => Type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 ? null : BlockFormats.Get(GgmlTypes.ToDType(Type));

    private void RowRange(int r0, int r1, ReadOnlySpan<float> x, ReadOnlySpan<byte> xq, Span<float> y)
    {
        if (Format is { Dot: { } dot } f)
        {
            int blocks = Cols / f.BlockSize;
            for (int r = r0; r < r1; r++) y[r] = dot(_raw.AsSpan(r * RowBytes, RowBytes), xq, blocks);
            return;
        }
        switch (Type)
        {
            case GgmlType.F32:
                for (int r = r0; r < r1; r++) y[r] = TensorPrimitives.Dot(_f32.AsSpan(r * Cols, Cols), x[..Cols]);
                break;
            default: // F16, BF16, block formats without a dot product
                {
                    Span<float> row = Cols <= 16384 ? stackalloc float[Cols] : new float[Cols];
                    for (int r = r0; r < r1; r++)
                    {
                        GgmlTypes.Dequantize(Type, _raw.AsSpan(r * RowBytes, RowBytes), row);
                        y[r] = TensorPrimitives.Dot(row, x[..Cols]);
                    }
                    break;
                }
        }
    }
}
