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
    {
        if (operands.Length > MaxOperands) throw new ArgumentException($"at most {MaxOperands} operands");
        long numel = 1;
        foreach (int d in shape) numel *= d;
        Numel = numel;
        _offsets = new int[MaxOperands];
        for (int k = 0; k < operands.Length; k++) _offsets[k] = operands[k].Offset;

        // Walk axes from the innermost outward, skipping size-1 axes and folding an axis into the one
        // inside it when every operand allows; merged axes are collected innermost first.
        int rank = Math.Max(shape.Length, 1);
        var sizes = new int[rank];
        var strides = new int[MaxOperands][];
        for (int k = 0; k < MaxOperands; k++) strides[k] = new int[rank];
        int m = 0;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            if (shape[d] == 1) continue;
            bool merge = m > 0;
            for (int k = 0; k < operands.Length && merge; k++)
                merge = operands[k].Strides[d] == strides[k][m - 1] * sizes[m - 1];
            if (merge)
            {
                sizes[m - 1] *= shape[d];
                continue;
            }
            sizes[m] = shape[d];
            for (int k = 0; k < operands.Length; k++) strides[k][m] = operands[k].Strides[d];
            m++;
        }
        if (m == 0) sizes[m++] = 1; // a single element

        _shape = new int[m];
        _strides = new int[MaxOperands][];
        for (int k = 0; k < MaxOperands; k++) _strides[k] = new int[m];
        for (int i = 0; i < m; i++)
        {
            _shape[m - 1 - i] = sizes[i];
            for (int k = 0; k < MaxOperands; k++) _strides[k][m - 1 - i] = strides[k][i];
        }
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
        int pieces = total < ParallelThreshold || !CpuParallel.Enabled ? 1 : (int)Math.Min(Environment.ProcessorCount * 4L, total / Grain);
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
