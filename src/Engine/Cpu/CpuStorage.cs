namespace ManagedTensor.Cpu;

/// <summary>
/// A CPU storage: a managed array of the dtype's CLR type (float[], double[], Half[], ...).
/// Op outputs are allocated without zeroing (every kernel writes all of its output): a training step
/// allocates tens of megabytes of activations, and zeroing them was a pass over memory for nothing.
/// Setting MT_POISON_UNINITIALIZED=1 fills such storages with NaN (0xFF bytes) instead, so a kernel
/// that reads its output before writing it shows up in the tests.
/// </summary>
public sealed class CpuStorage : Storage
{
    private static readonly bool Poison = Environment.GetEnvironmentVariable("MT_POISON_UNINITIALIZED") == "1";

    public CpuStorage(DType dtype, int length, bool zero = true)
        : base(Device.Cpu, dtype, length)
    {
        // A block format holds the bytes of its blocks; other dtypes one CLR element per element.
        int arrayLength = checked((int)(dtype.IsQuantized() ? dtype.ByteCount(length) : length));
        Data = zero ? Array.CreateInstance(dtype.ClrType(), arrayLength) : Uninitialized(dtype.IsQuantized() ? DType.U8 : dtype, arrayLength);
    }

    private static Array Uninitialized(DType dtype, int length)
    {
        Array a = dtype switch
        {
            DType.F32 => GC.AllocateUninitializedArray<float>(length),
            DType.F64 => GC.AllocateUninitializedArray<double>(length),
            DType.F16 => GC.AllocateUninitializedArray<Half>(length),
            DType.BF16 => GC.AllocateUninitializedArray<BFloat16>(length),
            DType.I32 => GC.AllocateUninitializedArray<int>(length),
            DType.I64 => GC.AllocateUninitializedArray<long>(length),
            DType.I8 => GC.AllocateUninitializedArray<sbyte>(length),
            DType.U8 => GC.AllocateUninitializedArray<byte>(length),
            _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
        };
        if (Poison) GetSpan(a).Fill(0xFF);
        return a;
    }

    private static Span<byte> GetSpan(Array a) => a switch
    {
        float[] f => System.Runtime.InteropServices.MemoryMarshal.AsBytes(f.AsSpan()),
        double[] d => System.Runtime.InteropServices.MemoryMarshal.AsBytes(d.AsSpan()),
        Half[] h => System.Runtime.InteropServices.MemoryMarshal.AsBytes(h.AsSpan()),
        BFloat16[] b => System.Runtime.InteropServices.MemoryMarshal.AsBytes(b.AsSpan()),
        int[] i => System.Runtime.InteropServices.MemoryMarshal.AsBytes(i.AsSpan()),
        long[] l => System.Runtime.InteropServices.MemoryMarshal.AsBytes(l.AsSpan()),
        sbyte[] s => System.Runtime.InteropServices.MemoryMarshal.AsBytes(s.AsSpan()),
        byte[] u => u.AsSpan(),
        _ => throw new ArgumentException($"unexpected array {a.GetType().Name}"),
    };

    /// <summary>The elements; typed as T[] for the dtype's CLR type T.</summary>
    public Array Data { get; }

    public Span<T> AsSpan<T>() where T : unmanaged
    {
        ThrowIfDisposed();
        return ((T[])Data).AsSpan();
    }

    public T[] As<T>() where T : unmanaged
    {
        ThrowIfDisposed();
        return (T[])Data;
    }

    public override Array ToHostArray(int start, int count)
    {
        ThrowIfDisposed();
        if (DType.IsQuantized())
        {
            var bytes = new byte[DType.ByteCount(count)];
            Array.Copy(Data, DType.ByteCount(start), bytes, 0, bytes.Length);
            return bytes;
        }
        var result = Array.CreateInstance(DType.ClrType(), count);
        Array.Copy(Data, start, result, 0, count);
        return result;
    }

    public override void CopyFromHost(Array data, int start)
    {
        ThrowIfDisposed();
        if (data.GetType().GetElementType() != DType.ClrType())
            throw new ArgumentException($"cannot copy {data.GetType().Name} into a {DType} storage");
        int count = HostElementCount(data);
        if (start < 0 || start + count > Length)
            throw new ArgumentOutOfRangeException(nameof(start), $"copy of {count} elements at {start} overruns a storage of {Length}");
        if (DType.IsQuantized()) Array.Copy(data, 0, Data, DType.ByteCount(start), data.Length);
        else Array.Copy(data, 0, Data, start, data.Length);
    }
}

/// <summary>Typed access to a CPU tensor's elements.</summary>
public static class CpuTensorExtensions
{
    /// <summary>The whole backing array of a CPU tensor (index it with Offset and Strides).</summary>
    public static T[] Data<T>(this Tensor t) where T : unmanaged
    {
        if (t.Storage is not CpuStorage s) throw new InvalidOperationException($"tensor {t.Describe()} is not on the CPU");
        return s.As<T>();
    }

    /// <summary>The elements of a contiguous CPU tensor as a span of length Numel.</summary>
    public static Span<T> Span<T>(this Tensor t) where T : unmanaged
    {
        if (!t.IsContiguous) throw new InvalidOperationException($"tensor {t.Describe()} is not contiguous");
        return t.Data<T>().AsSpan(t.Offset, t.Numel);
    }
}
