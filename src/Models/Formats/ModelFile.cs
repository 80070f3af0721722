using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;

namespace ManagedTensor.Models.Formats;

/// <summary>
/// A read-only, memory-mapped model file with a bounds-checked cursor. Every read checks the remaining length
/// first, so a corrupt count or offset becomes an <see cref="InvalidModelFileException"/> naming the field,
/// never an access violation or a huge allocation. Little-endian, like every format read here.
/// </summary>
public sealed unsafe class ModelFile : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private bool _disposed;

    public string Path { get; }
    public long Length { get; }

    /// <summary>Cursor position in bytes from the start of the file.</summary>
    public long Position { get; set; }

    public ModelFile(string path)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("model files are little-endian; big-endian hosts are not supported");
        Path = path;
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        Length = IO.FileLength.Of(path);
        if (Length == 0) return; // an empty file cannot be mapped; every read fails with a clear message instead
        _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset;
    }

    public long Remaining => Length - Position;

    public InvalidModelFileException Error(string message) => new(Path, message);

    /// <summary>Throws unless <paramref name="count"/> bytes remain at the cursor for <paramref name="field"/>.</summary>
    public void Require(long count, string field)
    {
        if (count < 0 || count > Remaining)
            throw Error($"{field}: needs {count} bytes at offset {Position}, but the file ends at {Length} ({Remaining} bytes left): truncated or corrupt");
    }

    /// <summary>A view of <paramref name="count"/> bytes at <paramref name="offset"/> (bounds-checked, no copy).</summary>
    public ReadOnlySpan<byte> Slice(long offset, long count, string field)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset < 0 || count < 0 || offset > Length || count > Length - offset)
            throw Error($"{field}: bytes [{offset}, {offset + count}) lie outside the file (length {Length})");
        if (count > int.MaxValue) throw Error($"{field}: {count} bytes in one piece is more than a span can hold");
        return new ReadOnlySpan<byte>(_base + offset, (int)count);
    }

    public ReadOnlySpan<byte> ReadBytes(long count, string field)
    {
        Require(count, field);
        var s = Slice(Position, count, field);
        Position += count;
        return s;
    }

    public T Read<T>(string field) where T : unmanaged => MemoryMarshal.Read<T>(ReadBytes(sizeof(T), field));

    public int ReadI32(string field) => Read<int>(field);
    public uint ReadU32(string field) => Read<uint>(field);
    public ulong ReadU64(string field) => Read<ulong>(field);
    public float ReadF32(string field) => Read<float>(field);

    /// <summary>Reads <paramref name="count"/> float32 values into a new array (count checked against the file first).</summary>
    public float[] ReadF32Array(long count, string field)
    {
        if (count < 0 || count > Remaining / 4) throw Error($"{field}: {count} float32 values at offset {Position} need {count * 4} bytes, only {Remaining} left");
        return MemoryMarshal.Cast<byte, float>(ReadBytes(count * 4, field)).ToArray();
    }

    public string ReadUtf8(long byteCount, string field) => Encoding.UTF8.GetString(ReadBytes(byteCount, field));

    /// <summary>Moves the cursor to <paramref name="offset"/> (must lie within the file).</summary>
    public void Seek(long offset, string field)
    {
        if (offset < 0 || offset > Length) throw Error($"{field}: offset {offset} is outside the file (length {Length})");
        Position = offset;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
