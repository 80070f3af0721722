using System.Runtime.InteropServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// Plumbing shared by the CPU neural-network ops (CpuNorm, CpuIndex, CpuLoss, CpuConv, CpuPool):
/// a fixed row partition for Parallel.For, index reads, and the generic bridge to <see cref="Gemm"/>.
/// </summary>
internal static class NnKernels
{
    /// <summary>Below this many element-operations a chunk is not worth a thread hand-off.</summary>
    private const long MinWorkPerChunk = 32 * 1024;

    /// <summary>Upper bound on chunks: a few per core, so per-chunk partial sums stay cheap to combine.</summary>
    private const int MaxChunks = 64;

    /// <summary>
    /// How many contiguous chunks [0, count) is split into. It depends only on the problem size, never on
    /// the machine, so reductions that combine per-chunk partials in chunk order are deterministic.
    /// </summary>
    public static int ChunkCount(int count, long workPerItem)
    {
        if (count <= 1) return 1;
        long chunks = count * Math.Max(workPerItem, 1) / MinWorkPerChunk;
        return (int)Math.Clamp(chunks, 1, Math.Min(count, MaxChunks));
    }

    /// <summary>Chunk <paramref name="chunk"/> of <paramref name="chunks"/> covers [start, end) of [0, count).</summary>
    public static (int Start, int End) ChunkRange(int chunk, int chunks, int count)
        => ((int)((long)count * chunk / chunks), (int)((long)count * (chunk + 1) / chunks));

    /// <summary>Runs body(chunk, start, end) over the fixed partition of [0, count), in parallel when there is more than one chunk.</summary>
    public static void For(int count, long workPerItem, Action<int, int, int> body)
        => ForChunks(ChunkCount(count, workPerItem), count, body);

    /// <summary>
    /// Runs body(chunk, start, end) for each of <paramref name="chunks"/> contiguous chunks of [0, count):
    /// on the calling thread when there is one chunk or one core, else in parallel. Callers that keep one partial
    /// result per chunk size their buffers with the same <paramref name="chunks"/>.
    /// </summary>
    public static void ForChunks(int chunks, int count, Action<int, int, int> body)
    {
        if (chunks <= 1)
        {
            body(0, 0, count);
            return;
        }
        if (!CpuParallel.Enabled) // one core: the same chunks, one after the other
        {
            for (int c = 0; c < chunks; c++)
            {
                var (s, e) = ChunkRange(c, chunks, count);
                body(c, s, e);
            }
            return;
        }
        Parallel.For(0, chunks, c =>
        {
            var (s, e) = ChunkRange(c, chunks, count);
            body(c, s, e);
        });
    }

    /// <summary>The exception for a dtype these kernels do not cover (F16/BF16 run on the GPU backend).</summary>
    public static NotSupportedException Unsupported(string op, Tensor t)
        => new($"{op}: the CPU backend computes F32 and F64 only, got {t.Describe()}; cast with To(DType.F32) first");

    /// <summary>Throws unless every tensor in <paramref name="others"/> has <paramref name="reference"/>'s dtype (the front end does not check optional inputs).</summary>
    public static void CheckSameDType(string op, Tensor reference, params ReadOnlySpan<Tensor> others)
    {
        foreach (var t in others)
            if (t.DType != reference.DType)
                throw new ArgumentException($"{op}: {t.Describe()} must have the dtype of {reference.Describe()}");
    }

    /// <summary>The contiguous elements of a CPU tensor as (array, offset): lambdas can capture these, unlike spans.</summary>
    public static (T[] Data, int Offset) Buf<T>(Tensor t) where T : unmanaged => (t.Elements<T>(), t.Offset);

    /// <summary>An I32 or I64 index tensor widened to long (index tensors are small next to the data they address).</summary>
    public static long[] ReadIndices(Tensor idx, string op)
    {
        var result = new long[idx.Numel];
        switch (idx.DType)
        {
            case DType.I32:
                var i32 = idx.ElementSpan<int>();
                for (int i = 0; i < result.Length; i++) result[i] = i32[i];
                break;
            case DType.I64:
                idx.ElementSpan<long>().CopyTo(result);
                break;
            default:
                throw new ArgumentException($"{op}: index must be I32 or I64, got {idx.Describe()}");
        }
        return result;
    }

    /// <summary>Throws unless every index lies in [0, size): the message names the op, the value and the axis.</summary>
    public static void CheckIndices(ReadOnlySpan<long> idx, int size, int axis, string op)
    {
        foreach (long v in idx)
            if ((ulong)v >= (ulong)size)
                throw new IndexOutOfRangeException($"{op}: index {v} is out of range for axis {axis} of size {size}");
    }

    /// <summary>C = alpha * op(A) op(B) + beta * C through Gemm.Run, for T = float or double.</summary>
    public static void RunGemm<T>(bool transA, bool transB, int m, int n, int k, double alpha,
        ReadOnlySpan<T> a, int lda, ReadOnlySpan<T> b, int ldb, double beta, Span<T> c, int ldc)
        where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            Gemm.Run(transA, transB, m, n, k, (float)alpha, MemoryMarshal.Cast<T, float>(a), lda,
                MemoryMarshal.Cast<T, float>(b), ldb, (float)beta, MemoryMarshal.Cast<T, float>(c), ldc);
        else if (typeof(T) == typeof(double))
            Gemm.Run(transA, transB, m, n, k, alpha, MemoryMarshal.Cast<T, double>(a), lda,
                MemoryMarshal.Cast<T, double>(b), ldb, beta, MemoryMarshal.Cast<T, double>(c), ldc);
        else
            throw new NotSupportedException($"GEMM on the CPU takes float or double, not {typeof(T).Name}");
    }
}

/// <summary>
/// A scratch buffer rented from the shared array pool, returned on Dispose (<c>using var s = new Scratch&lt;T&gt;(n)</c>).
/// Kernels run many times per training step; allocating a fresh vocabulary row or im2col matrix each
/// time lands on the large-object heap and the gen-2 collections it triggers cost more than the kernel
/// (cross-entropy over (1024, 50257): 130 ms with new arrays, 15 ms with pooled ones).
/// Contents start undefined: callers write before reading, or call <see cref="Clear"/>.
/// </summary>
internal readonly struct Scratch<T> : IDisposable where T : unmanaged
{
    private readonly T[]? _array;

    public Scratch(int length)
    {
        Length = length;
        _array = length == 0 ? null : System.Buffers.ArrayPool<T>.Shared.Rent(length);
    }

    public int Length { get; }

    /// <summary>The rented array (may be longer than <see cref="Length"/>); for lambdas, which cannot capture spans.</summary>
    public T[] Array => _array ?? [];

    public Span<T> Span => _array is null ? default : _array.AsSpan(0, Length);

    public void Clear() => Span.Clear();

    public void Dispose()
    {
        if (_array is not null) System.Buffers.ArrayPool<T>.Shared.Return(_array);
    }
}
