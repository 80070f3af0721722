using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu;

/// <summary>
/// A storage in device memory: a block from the backend's caching allocator, seen as elements of the
/// dtype's device type (<see cref="DeviceTypes"/>; F16 and BF16 as their 16 bits). Dispose returns the
/// block to the allocator's cache at once; a storage that is dropped without Dispose returns it when
/// the GC finalizes it. Host copies run on the backend's stream, after every kernel queued before them.
/// </summary>
public sealed class GpuStorage : Storage
{
    private readonly GpuBlock? _block;

    internal GpuStorage(GpuBackend backend, DType dtype, int length, GpuBlock? block)
        : base(backend.Device, dtype, length)
    {
        Backend = backend;
        _block = block;
    }

    ~GpuStorage()
    {
        if (_block is not null) Backend.Allocator.Free(_block);
    }

    internal GpuBackend Backend { get; }

    public long SizeInBytes => DType.ByteCount(Length);

    /// <summary>The category the allocator counts this storage under.</summary>
    public MemoryCategory Category
    {
        get => _block?.Category ?? MemoryCategory.Activations;
        set
        {
            if (_block is not null) Backend.Allocator.Recategorize(_block, value);
        }
    }

    /// <summary>The storage's bytes (an empty view for a storage of no elements).</summary>
    internal ArrayView<byte> Bytes
    {
        get
        {
            ThrowIfDisposed();
            return _block is null ? ArrayView<byte>.Empty : _block.View.SubView(0, SizeInBytes);
        }
    }

    /// <summary>The elements as <typeparamref name="T"/>, which must be the dtype's device type (or one of its size, for bit copies).</summary>
    internal ArrayView<T> View<T>() where T : unmanaged
    {
        if (DType.IsQuantized() ? typeof(T) != typeof(byte) : Marshal.SizeOf<T>() != DType.SizeOf())
            throw new InvalidOperationException($"a {DType} storage cannot be viewed as {typeof(T).Name}");
        return _block is null ? ArrayView<T>.Empty : Bytes.Cast<T>();
    }

    public override unsafe Array ToHostArray(int start, int count)
    {
        CheckRange(start, count);
        long offset = DType.ByteCount(start), bytes = DType.ByteCount(count); // a block format's range is whole blocks
        var result = Array.CreateInstance(DType.ClrType(), DType.IsQuantized() ? bytes : count);
        if (count == 0) return result;
        fixed (byte* p = &MemoryMarshal.GetArrayDataReference(result))
        {
            Bytes.SubView(offset, bytes).CopyToCPU(Backend.Stream, ref *p, bytes);
        }
        Backend.CheckKernelStatus();
        return result;
    }

    public override unsafe void CopyFromHost(Array data, int start)
    {
        if (data.GetType().GetElementType() != DType.ClrType())
            throw new ArgumentException($"cannot copy {data.GetType().Name} into a {DType} storage");
        int count = HostElementCount(data);
        CheckRange(start, count);
        if (count == 0) return;
        long offset = DType.ByteCount(start), bytes = DType.ByteCount(count);
        fixed (byte* p = &MemoryMarshal.GetArrayDataReference(data))
        {
            Bytes.SubView(offset, bytes).CopyFromCPU(Backend.Stream, ref *p, bytes);
        }
    }

    private void CheckRange(int start, int count)
    {
        ThrowIfDisposed();
        if (start < 0 || count < 0 || (long)start + count > Length)
            throw new ArgumentOutOfRangeException(nameof(start), $"elements [{start}, {start + count}) are outside a {DType} storage of {Length} on {Device}");
    }

    protected override void Release()
    {
        if (_block is not null) Backend.Allocator.Free(_block);
    }
}

/// <summary>The element type a device storage of each dtype holds in kernels.</summary>
internal static class DeviceTypes
{
    /// <summary>float, double, ushort (F16 bits), ushort (BF16 bits), int, long, sbyte, byte.</summary>
    public static Type Of(DType dtype) => dtype switch
    {
        DType.F32 => typeof(float),
        DType.F64 => typeof(double),
        DType.F16 or DType.BF16 => typeof(ushort),
        DType.I32 => typeof(int),
        DType.I64 => typeof(long),
        DType.I8 => typeof(sbyte),
        DType.U8 => typeof(byte),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };
}
