namespace ManagedTensor.Gpu;

/// <summary>
/// Up to four operands over one shape, passed to elementwise kernels by value: element i (row-major
/// over the shape) of operand k lives at Offsets[k] + sum_d index_d(i) * Strides[d * 4 + k].
/// Built like the CPU's StridedLoop: size-1 axes are dropped and adjacent axes merged wherever every
/// operand steps through them as one, so a contiguous tensor becomes rank 1 (no division per element)
/// and (N, C) + bias (C) becomes rank 2 with bias strides (0, 1). Non-contiguous inputs (transposes,
/// slices, broadcasts) need no copy.
/// </summary>
internal unsafe struct StridedLayout
{
    public const int MaxRank = 8;
    public const int MaxOperands = 4;

    public int Rank;
    public fixed int Shape[MaxRank];
    public fixed int Strides[MaxRank * MaxOperands]; // [axis * 4 + operand]
    public fixed int Offsets[MaxOperands];

    /// <summary>The layout of <paramref name="operands"/> (operand 0 is the output by convention) over <paramref name="shape"/>.</summary>
    public static StridedLayout Create(int[] shape, params ReadOnlySpan<Tensor> operands)
    {
        var strides = new int[operands.Length][];
        var offsets = new int[operands.Length];
        for (int k = 0; k < operands.Length; k++)
        {
            strides[k] = operands[k].Strides;
            offsets[k] = operands[k].Offset;
        }
        return Create(shape, strides, offsets);
    }

    /// <summary>The layout of operands given by their strides over <paramref name="shape"/> and their offsets.</summary>
    public static StridedLayout Create(ReadOnlySpan<int> shape, int[][] operandStrides, int[] offsets)
    {
        int operands = operandStrides.Length;
        if (operands > MaxOperands) throw new ArgumentException($"at most {MaxOperands} operands");
        var layout = new StridedLayout();
        for (int k = 0; k < operands; k++) layout.Offsets[k] = offsets[k];
        // Innermost first: fold an axis into the one inside it when every operand allows.
        Span<int> sizes = stackalloc int[Math.Max(shape.Length, 1)];
        Span<int> strides = stackalloc int[Math.Max(shape.Length, 1) * MaxOperands];
        int m = 0;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            if (shape[d] == 1) continue;
            bool merge = m > 0;
            for (int k = 0; k < operands && merge; k++)
                merge = operandStrides[k][d] == strides[(m - 1) * MaxOperands + k] * sizes[m - 1];
            if (merge)
            {
                sizes[m - 1] *= shape[d];
                continue;
            }
            sizes[m] = shape[d];
            for (int k = 0; k < operands; k++) strides[m * MaxOperands + k] = operandStrides[k][d];
            m++;
        }
        if (m == 0)
        {
            sizes[0] = 1;
            m = 1;
        }
        if (m > MaxRank)
            throw new NotSupportedException($"the GPU backend's strided kernels take at most {MaxRank} non-mergeable axes, got {m} for shape {Tensor.ShapeString(shape)}");
        layout.Rank = m;
        for (int i = 0; i < m; i++)
        {
            layout.Shape[m - 1 - i] = sizes[i];
            for (int k = 0; k < MaxOperands; k++) layout.Strides[(m - 1 - i) * MaxOperands + k] = strides[i * MaxOperands + k];
        }
        return layout;
    }

    /// <summary>The offsets of element <paramref name="i"/> in operands 0 and 1.</summary>
    public void Offsets2(int i, out int o0, out int o1)
    {
        if (Rank == 1)
        {
            o0 = Offsets[0] + i * Strides[0];
            o1 = Offsets[1] + i * Strides[1];
            return;
        }
        o0 = Offsets[0];
        o1 = Offsets[1];
        for (int d = Rank - 1; d >= 0; d--)
        {
            int size = Shape[d];
            int c = i % size;
            i /= size;
            o0 += c * Strides[d * MaxOperands];
            o1 += c * Strides[d * MaxOperands + 1];
        }
    }

    /// <summary>The offsets of element <paramref name="i"/> in operands 0, 1 and 2.</summary>
    public void Offsets3(int i, out int o0, out int o1, out int o2)
    {
        o0 = Offsets[0];
        o1 = Offsets[1];
        o2 = Offsets[2];
        for (int d = Rank - 1; d >= 0; d--)
        {
            int size = Shape[d];
            int c = Rank == 1 ? i : i % size;
            i = Rank == 1 ? 0 : i / size;
            o0 += c * Strides[d * MaxOperands];
            o1 += c * Strides[d * MaxOperands + 1];
            o2 += c * Strides[d * MaxOperands + 2];
        }
    }

    /// <summary>The offsets of element <paramref name="i"/> in all four operands.</summary>
    public void Offsets4(int i, out int o0, out int o1, out int o2, out int o3)
    {
        o0 = Offsets[0];
        o1 = Offsets[1];
        o2 = Offsets[2];
        o3 = Offsets[3];
        for (int d = Rank - 1; d >= 0; d--)
        {
            int size = Shape[d];
            int c = Rank == 1 ? i : i % size;
            i = Rank == 1 ? 0 : i / size;
            o0 += c * Strides[d * MaxOperands];
            o1 += c * Strides[d * MaxOperands + 1];
            o2 += c * Strides[d * MaxOperands + 2];
            o3 += c * Strides[d * MaxOperands + 3];
        }
    }

    /// <summary>The offset of element <paramref name="i"/> in operand 0 (a one-operand layout: fill, random).</summary>
    public int Offset0(int i)
    {
        if (Rank == 1) return Offsets[0] + i * Strides[0];
        int o = Offsets[0];
        for (int d = Rank - 1; d >= 0; d--)
        {
            int size = Shape[d];
            o += i % size * Strides[d * MaxOperands];
            i /= size;
        }
        return o;
    }
}
