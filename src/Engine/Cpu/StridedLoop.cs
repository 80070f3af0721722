using System.Runtime.CompilerServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// A kernel over one row of an elementwise loop: <paramref name="n"/> elements whose first elements sit
/// at offsets o0..o3 of operands 0..3 (operand 0 is the output by convention). The kernel holds the
/// arrays and the inner strides itself, so a row with all inner strides 1 can go to a vectorized span
/// routine and a row whose input stride is 0 (a broadcast scalar) to a scalar variant.
/// Kernels are structs used through generic parameters: the JIT specializes the loop per kernel, so
/// there is no virtual call and no allocation per element.
/// </summary>
internal interface IRowKernel
{
    void Row(int n, int o0, int o1, int o2, int o3);
}

/// <summary>
/// Up to four operands (each an offset and strides) over one common shape, simplified for looping:
/// axes of size 1 are dropped and adjacent axes are merged wherever every operand steps through them
/// as one (stride[d] == stride[d + 1] * shape[d + 1]). A contiguous tensor becomes one long row; a
/// bias broadcast over rows, (N, C) + (C), becomes N rows where the bias has strides (0, 1).
/// </summary>
internal sealed class StridedLoop
{
    /// <summary>Below this many elements a loop runs on the calling thread.</summary>
    public const int ParallelThreshold = 32 * 1024;

    /// <summary>Smallest piece of work given to one parallel task.</summary>
    private const int Grain = 16 * 1024;

    private const int MaxOperands = 4;

    private readonly int[] _shape;      // merged shape, outermost first; the last axis is the row
    private readonly int[][] _strides;  // [operand][axis]
    private readonly int[] _offsets;    // [operand]

    public StridedLoop(int[] shape, params Tensor[] operands)
        : this(shape, operands.Select(t => t.Strides).ToArray(), operands.Select(t => t.Offset).ToArray())
    {
    }

    public StridedLoop(int[] shape, int[][] strides, int[] offsets)
    {
        if (strides.Length > MaxOperands) throw new ArgumentException($"at most {MaxOperands} operands");
        long numel = 1;
        foreach (int d in shape) numel *= d;
        Numel = numel;
        _offsets = new int[MaxOperands];
        offsets.CopyTo(_offsets, 0);

        // Keep axes of size > 1, then merge each axis into the one inside it when all operands allow.
        var keptShape = new List<int>();
        var keptStrides = new List<int[]>();
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 1) continue;
            var s = new int[MaxOperands];
            for (int k = 0; k < strides.Length; k++) s[k] = strides[k][d];
            keptShape.Add(shape[d]);
            keptStrides.Add(s);
        }
        if (keptShape.Count == 0)
        {
            keptShape.Add(1);
            keptStrides.Add(new int[MaxOperands]);
        }
        var mergedShape = new List<int> { keptShape[^1] };
        var mergedStrides = new List<int[]> { keptStrides[^1] };
        for (int d = keptShape.Count - 2; d >= 0; d--)
        {
            int innerSize = mergedShape[0];
            var inner = mergedStrides[0];
            var outer = keptStrides[d];
            bool merge = true;
            for (int k = 0; k < MaxOperands; k++) merge &= outer[k] == inner[k] * innerSize;
            if (merge) mergedShape[0] = innerSize * keptShape[d];
            else
            {
                mergedShape.Insert(0, keptShape[d]);
                mergedStrides.Insert(0, outer);
            }
        }
        _shape = mergedShape.ToArray();
        _strides = new int[MaxOperands][];
        for (int k = 0; k < MaxOperands; k++) _strides[k] = mergedStrides.Select(s => s[k]).ToArray();
    }

    public long Numel { get; }

    /// <summary>Length of the innermost (row) axis after merging.</summary>
    public int RowLength => _shape[^1];

    /// <summary>The stride of operand <paramref name="k"/> along the row axis.</summary>
    public int InnerStride(int k) => _strides[k][^1];

    /// <summary>Runs <paramref name="kernel"/> over every element, in parallel pieces when the loop is large.</summary>
    public void Run<TK>(TK kernel) where TK : struct, IRowKernel
    {
        long total = Numel;
        if (total == 0) return;
        int pieces = total < ParallelThreshold ? 1 : (int)Math.Min(Environment.ProcessorCount * 4L, total / Grain);
        if (pieces <= 1)
        {
            RunRange(ref kernel, 0, total);
            return;
        }
        Parallel.For(0, pieces, p =>
        {
            var k = kernel;
            RunRange(ref k, total * p / pieces, total * (p + 1) / pieces);
        });
    }

    /// <summary>Elements [start, end) in row-major order of the merged shape.</summary>
    private void RunRange<TK>(ref TK kernel, long start, long end) where TK : struct, IRowKernel
    {
        int rank = _shape.Length;
        int rowLength = _shape[rank - 1];
        Span<int> index = stackalloc int[rank];
        long row = start / rowLength;
        int col = (int)(start % rowLength);
        // Offsets of element 0 of the current row, per operand.
        int b0 = _offsets[0], b1 = _offsets[1], b2 = _offsets[2], b3 = _offsets[3];
        for (int d = rank - 2; d >= 0; d--)
        {
            int i = (int)(row % _shape[d]);
            row /= _shape[d];
            index[d] = i;
            b0 += i * _strides[0][d];
            b1 += i * _strides[1][d];
            b2 += i * _strides[2][d];
            b3 += i * _strides[3][d];
        }
        int s0 = _strides[0][rank - 1], s1 = _strides[1][rank - 1], s2 = _strides[2][rank - 1], s3 = _strides[3][rank - 1];
        long pos = start;
        while (true)
        {
            int n = (int)Math.Min(rowLength - col, end - pos);
            kernel.Row(n, b0 + col * s0, b1 + col * s1, b2 + col * s2, b3 + col * s3);
            pos += n;
            if (pos >= end) return;
            col = 0;
            for (int d = rank - 2; d >= 0; d--)
            {
                b0 += _strides[0][d];
                b1 += _strides[1][d];
                b2 += _strides[2][d];
                b3 += _strides[3][d];
                if (++index[d] < _shape[d]) break;
                b0 -= _strides[0][d] * _shape[d];
                b1 -= _strides[1][d] * _shape[d];
                b2 -= _strides[2][d] * _shape[d];
                b3 -= _strides[3][d] * _shape[d];
                index[d] = 0;
            }
        }
    }
}

/// <summary>Splits [0, count) into parallel pieces when the total work is large.</summary>
internal static class CpuParallel
{
    /// <summary>
    /// Calls <paramref name="body"/>(start, end) over pieces of [0, count). <paramref name="workPerItem"/>
    /// (elements touched per item) decides whether threads are worth starting.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void For(int count, long workPerItem, Action<int, int> body)
    {
        long work = count * Math.Max(workPerItem, 1);
        int pieces = work < StridedLoop.ParallelThreshold ? 1 : (int)Math.Min(Math.Min(Environment.ProcessorCount * 4L, work / (16 * 1024)), count);
        if (pieces <= 1)
        {
            if (count > 0) body(0, count);
            return;
        }
        Parallel.For(0, pieces, p => body((int)((long)count * p / pieces), (int)((long)count * (p + 1) / pieces)));
    }
}
