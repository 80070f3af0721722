namespace ManagedTensor.Cpu;

/// <summary>
/// A CPU storage: a managed array of the dtype's CLR type (float[], double[], Half[], ...).
/// Op outputs are allocated without zeroing (every kernel writes all of its output): a training step
/// allocates tens of megabytes of activations, and zeroing them was a pass over memory for nothing.
/// Arrays of <see cref="CpuArrayPool.MinBytes"/> or more come from <see cref="CpuArrayPool"/> and go back
/// to it when the storage is disposed or collected.
/// Setting MT_POISON_UNINITIALIZED=1 fills such storages with NaN (0xFF bytes) instead, so a kernel
/// that reads its output before writing it shows up in the tests.
/// </summary>
public sealed class CpuStorage : Storage
{
    private static readonly bool Poison = Environment.GetEnvironmentVariable("MT_POISON_UNINITIALIZED") == "1";
    private readonly int _poolSlot = -1;
    private bool _escaped;

    public CpuStorage(DType dtype, int length, bool zero = true)
        : base(Device.Cpu, dtype, length)
    {
        // A block format holds the bytes of its blocks; other dtypes one CLR element per element.
        var arrayType = dtype.IsQuantized() ? DType.U8 : dtype;
        int arrayLength = checked((int)(dtype.IsQuantized() ? dtype.ByteCount(length) : length));
        long bytes = dtype.ByteCount(length);
        Array New() => !zero ? Uninitialized(arrayType, arrayLength)
            : bytes >= 2 * HugePages.PageBytes && HugePages.Enabled ? Cleared(Uninitialized(arrayType, arrayLength)) // huge pages advised before the clearing touches them
            : Array.CreateInstance(arrayType.ClrType(), arrayLength);
        if (bytes < CpuArrayPool.MinBytes || !CpuArrayPool.Enabled)
        {
            Data = New();
            return;
        }
        Data = CpuArrayPool.Rent(arrayType.ClrType(), arrayLength, bytes, zero, this, New, out _poolSlot);
        if (!zero && Poison) GetSpan(Data).Fill(0xFF); // a reused array holds its last owner's values
    }

    /// <summary>The array goes back to the pool: it may belong to another storage at once.</summary>
    protected override void Release()
    {
        if (_poolSlot >= 0) CpuArrayPool.Return(_poolSlot);
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
        HugePages.Advise(a, (long)length * dtype.SizeOf()); // before the first touch (HugePages.cs)
        if (Poison) GetSpan(a).Fill(0xFF);
        return a;
    }

    private static Array Cleared(Array a)
    {
        GetSpan(a).Clear();
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

    /// <summary>The array, for code outside the engine's kernels: from now on the pool never recycles it when this storage dies.</summary>
    internal T[] Escape<T>() where T : unmanaged
    {
        if (!_escaped && _poolSlot >= 0)
        {
            _escaped = true;
            CpuArrayPool.MarkEscaped(_poolSlot);
        }
        return As<T>();
    }

    public override Array ToHostArray(int start, int count)
    {
        ThrowIfDisposed();
        Array result;
        if (DType.IsQuantized())
        {
            result = new byte[DType.ByteCount(count)];
            Array.Copy(Data, DType.ByteCount(start), result, 0, result.Length);
        }
        else
        {
            result = Array.CreateInstance(DType.ClrType(), count);
            Array.Copy(Data, start, result, 0, count);
        }
        GC.KeepAlive(this); // the pool may reuse the array of a storage found dead (CpuArrayPool)
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
        GC.KeepAlive(this); // the pool may reuse the array of a storage found dead (CpuArrayPool)
    }
}

/// <summary>Typed access to a CPU tensor's elements.</summary>
public static class CpuTensorExtensions
{
    /// <summary>
    /// The whole backing array of a CPU tensor (index it with Offset and Strides). The array belongs to the
    /// tensor's storage: use it only while the tensor (or a view of its storage) is alive, since once the
    /// storage is unreachable <see cref="CpuArrayPool"/> may give the array to another tensor. Code that
    /// drops its last reference to the tensor while still using the array ends with GC.KeepAlive(tensor).
    /// </summary>
    public static T[] Data<T>(this Tensor t) where T : unmanaged => CpuStorageOf(t).Escape<T>();

    /// <summary>The elements of a contiguous CPU tensor as a span of length Numel (see <see cref="Data{T}"/>).</summary>
    public static Span<T> Span<T>(this Tensor t) where T : unmanaged => t.Data<T>().AsSpan(ContiguousOffset(t), t.Numel);

    /// <summary>The backing array for the engine's kernels, which keep the tensor alive while they use it (not marked escaped).</summary>
    internal static T[] Elements<T>(this Tensor t) where T : unmanaged => CpuStorageOf(t).As<T>();

    /// <summary><see cref="Span{T}"/> for the engine's kernels.</summary>
    internal static Span<T> ElementSpan<T>(this Tensor t) where T : unmanaged => t.Elements<T>().AsSpan(ContiguousOffset(t), t.Numel);

    private static CpuStorage CpuStorageOf(Tensor t) =>
        t.Storage as CpuStorage ?? throw new InvalidOperationException($"tensor {t.Describe()} is not on the CPU");

    private static int ContiguousOffset(Tensor t) =>
        t.IsContiguous ? t.Offset : throw new InvalidOperationException($"tensor {t.Describe()} is not contiguous");
}
