namespace ManagedTensor.Cpu;

/// <summary>A CPU storage: a managed array of the dtype's CLR type (float[], double[], Half[], ...).</summary>
public sealed class CpuStorage : Storage
{
    public CpuStorage(DType dtype, int length)
        : base(Device.Cpu, dtype, length)
    {
        Data = Array.CreateInstance(dtype.ClrType(), length);
    }

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
        var result = Array.CreateInstance(DType.ClrType(), count);
        Array.Copy(Data, start, result, 0, count);
        return result;
    }

    public override void CopyFromHost(Array data, int start)
    {
        ThrowIfDisposed();
        if (data.GetType().GetElementType() != DType.ClrType())
            throw new ArgumentException($"cannot copy {data.GetType().Name} into a {DType} storage");
        if (start < 0 || start + data.Length > Length)
            throw new ArgumentOutOfRangeException(nameof(start), $"copy of {data.Length} elements at {start} overruns a storage of {Length}");
        Array.Copy(data, 0, Data, start, data.Length);
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
