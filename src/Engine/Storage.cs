namespace ManagedTensor;

/// <summary>
/// A flat buffer of <see cref="Length"/> elements of one dtype on one device. Tensors are views
/// (shape, strides, offset) over a storage; several tensors may share one storage.
/// Device storages return their memory to the backend's allocator on Dispose.
/// </summary>
public abstract class Storage : IDisposable
{
    protected Storage(Device device, DType dtype, int length)
    {
        Device = device;
        DType = dtype;
        Length = length;
    }

    public Device Device { get; }
    public DType DType { get; }
    public int Length { get; }
    public bool IsDisposed { get; private set; }

    /// <summary>
    /// Copies <paramref name="count"/> elements starting at <paramref name="start"/> to a new host array of the
    /// dtype's CLR type (for a block format: the bytes of those whole blocks).
    /// </summary>
    public abstract Array ToHostArray(int start, int count);

    /// <summary>Overwrites elements from <paramref name="start"/> on from a host array of the dtype's CLR type (a block format's bytes).</summary>
    public abstract void CopyFromHost(Array data, int start);

    /// <summary>How many elements a host array holds: its length, or for a block format the values its bytes encode.</summary>
    protected int HostElementCount(Array data)
    {
        if (!DType.IsQuantized()) return data.Length;
        var f = Quant.BlockFormats.Get(DType);
        if (data.Length % f.BlockBytes != 0)
            throw new ArgumentException($"{data.Length} bytes are not whole {DType} blocks of {f.BlockBytes} bytes");
        return data.Length / f.BlockBytes * f.BlockSize;
    }

    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Release();
        GC.SuppressFinalize(this);
    }

    protected virtual void Release() { }

    protected void ThrowIfDisposed()
    {
        if (IsDisposed) throw new ObjectDisposedException(nameof(Storage), $"{DType} storage of {Length} elements on {Device} was disposed");
    }
}
