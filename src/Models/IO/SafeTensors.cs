using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using ManagedTensor.Cpu;

namespace ManagedTensor.Models.IO;

/// <summary>One tensor's entry in a safetensors header: where its bytes lie in the data section.</summary>
/// <param name="Begin">Byte offset of the first element, relative to the start of the data section.</param>
/// <param name="End">One past the last byte (End - Begin = numel * element size).</param>
public sealed record SafeTensorInfo(string Name, DType DType, int[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
}

/// <summary>
/// The safetensors format (Hugging Face): a file is
/// <code>
///   u64 little-endian N | N bytes of UTF-8 JSON header | data section
/// </code>
/// The header maps each tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
/// with offsets relative to the data section, plus an optional "__metadata__" map of string to string.
/// Elements are stored row-major and little-endian. The tensors must tile the data section exactly:
/// no overlaps and no holes. Nothing else: no pickles, no code, so a loader only has to check sizes.
/// </summary>
public static class SafeTensors
{
    /// <summary>Headers above this are refused before being read (the reference implementation's limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public const string MetadataKey = "__metadata__";

    public static string DTypeName(DType dtype) => dtype switch
    {
        DType.F32 => "F32",
        DType.F64 => "F64",
        DType.F16 => "F16",
        DType.BF16 => "BF16",
        DType.I32 => "I32",
        DType.I64 => "I64",
        DType.I8 => "I8",
        DType.U8 => "U8",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "no safetensors name for this dtype"),
    };

    public static bool TryParseDType(string name, out DType dtype)
    {
        switch (name)
        {
            case "F32": dtype = DType.F32; return true;
            case "F64": dtype = DType.F64; return true;
            case "F16": dtype = DType.F16; return true;
            case "BF16": dtype = DType.BF16; return true;
            case "I32": dtype = DType.I32; return true;
            case "I64": dtype = DType.I64; return true;
            case "I8": dtype = DType.I8; return true;
            case "U8": dtype = DType.U8; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>Opens <paramref name="path"/> and validates its whole header (see <see cref="SafeTensorsFile"/>).</summary>
    public static SafeTensorsFile Open(string path) => SafeTensorsFile.Open(path);

    /// <summary>Reads every tensor of <paramref name="path"/> into CPU tensors, in file order.</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        return file.LoadAll();
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> (in the given order) and optional string metadata to
    /// <paramref name="path"/> atomically (temporary file, then rename).
    /// </summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors writing needs a little-endian host");
        var list = tensors.ToList();
        var seen = new HashSet<string>();
        foreach (var (name, t) in list)
        {
            if (name == MetadataKey) throw new ArgumentException($"safetensors {path}: a tensor may not be named {MetadataKey}");
            if (!seen.Add(name)) throw new ArgumentException($"safetensors {path}: tensor name '{name}' appears twice");
            DTypeName(t.DType); // throws for a dtype the format cannot hold
        }

        byte[] header = BuildHeader(list, metadata);
        AtomicFile.Write(path, stream =>
        {
            Span<byte> len = stackalloc byte[8];
            BitConverter.TryWriteBytes(len, (ulong)header.Length);
            stream.Write(len);
            stream.Write(header);
            using (GradMode.NoGrad())
            {
                foreach (var (_, t) in list) WriteElements(stream, t);
            }
        });
    }

    /// <summary>The JSON header, padded with spaces so the data section starts 8-byte aligned.</summary>
    private static byte[] BuildHeader(List<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, t) in tensors)
            {
                long bytes = (long)t.Numel * t.DType.SizeOf();
                w.WriteStartObject(name);
                w.WriteString("dtype", DTypeName(t.DType));
                w.WriteStartArray("shape");
                foreach (int d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - (ms.Length + 8) % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    private static void WriteElements(Stream stream, Tensor t)
    {
        var c = t.Contiguous();
        Array host = c.Storage.ToHostArray(c.Offset, c.Numel);
        switch (host)
        {
            case float[] a: stream.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case double[] a: stream.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case Half[] a: stream.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case BFloat16[] a: stream.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case int[] a: stream.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case long[] a: stream.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case sbyte[] a: stream.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case byte[] a: stream.Write(a); break;
            default: throw new InvalidOperationException($"tensor {t.Describe()}: unexpected host array {host.GetType().Name}");
        }
    }
}

/// <summary>
/// An open safetensors file: the validated header, and the data section memory-mapped so that a
/// tensor's bytes are copied straight from the page cache when it is loaded (a multi-gigabyte file
/// costs nothing until its tensors are read).
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafeTensorInfo> _byName;

    private SafeTensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, long dataStart,
        List<SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name);
    }

    public string Path { get; }

    /// <summary>The tensors in data-section order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>The "__metadata__" map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public SafeTensorInfo Info(string name) =>
        _byName.TryGetValue(name, out var info) ? info : throw new KeyNotFoundException($"safetensors {Path}: no tensor named '{name}'");

    /// <summary>Reads tensor <paramref name="name"/> into a new CPU tensor.</summary>
    public Tensor Load(string name)
    {
        var info = Info(name);
        var t = Tensor.Empty(info.Shape, info.DType);
        if (info.ByteLength == 0) return t;
        unsafe
        {
            byte* basePtr = null;
            var handle = _view.SafeMemoryMappedViewHandle;
            handle.AcquirePointer(ref basePtr);
            try
            {
                // The view may start before the requested offset (page alignment): PointerOffset says by how much.
                var src = new ReadOnlySpan<byte>(basePtr + _view.PointerOffset + _dataStart + info.Begin, checked((int)info.ByteLength));
                CopyInto(t, src);
            }
            finally
            {
                handle.ReleasePointer();
            }
        }
        t.Name = name;
        return t;
    }

    /// <summary>The stored bytes of tensor <paramref name="name"/> (little-endian elements of its dtype), copied out of the mapping.</summary>
    public byte[] ReadBytes(string name)
    {
        var info = Info(name);
        var bytes = new byte[info.ByteLength];
        if (bytes.Length == 0) return bytes;
        unsafe
        {
            byte* basePtr = null;
            var handle = _view.SafeMemoryMappedViewHandle;
            handle.AcquirePointer(ref basePtr);
            try
            {
                new ReadOnlySpan<byte>(basePtr + _view.PointerOffset + _dataStart + info.Begin, checked((int)info.ByteLength)).CopyTo(bytes);
            }
            finally
            {
                handle.ReleasePointer();
            }
        }
        return bytes;
    }

    public Dictionary<string, Tensor> LoadAll() => Tensors.ToDictionary(t => t.Name, t => Load(t.Name));

    internal static void CopyInto(Tensor t, ReadOnlySpan<byte> src)
    {
        switch (t.DType)
        {
            case DType.F32: src.CopyTo(MemoryMarshal.AsBytes(t.Span<float>())); break;
            case DType.F64: src.CopyTo(MemoryMarshal.AsBytes(t.Span<double>())); break;
            case DType.F16: src.CopyTo(MemoryMarshal.AsBytes(t.Span<Half>())); break;
            case DType.BF16: src.CopyTo(MemoryMarshal.AsBytes(t.Span<BFloat16>())); break;
            case DType.I32: src.CopyTo(MemoryMarshal.AsBytes(t.Span<int>())); break;
            case DType.I64: src.CopyTo(MemoryMarshal.AsBytes(t.Span<long>())); break;
            case DType.I8: src.CopyTo(MemoryMarshal.AsBytes(t.Span<sbyte>())); break;
            case DType.U8: src.CopyTo(t.Span<byte>()); break;
            default: throw new InvalidOperationException($"unexpected dtype {t.DType}");
        }
    }

    public void Dispose()
    {
        _view.Dispose();
        _map.Dispose();
    }

    /// <summary>
    /// Opens and validates: the file holds the 8-byte length and the header; the header is a JSON object
    /// of well-formed entries with known dtypes; each entry's byte range matches its shape and dtype and
    /// lies inside the data section; the ranges neither overlap nor leave holes. Every error names the
    /// file and, where there is one, the tensor.
    /// </summary>
    public static SafeTensorsFile Open(string path)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors reading needs a little-endian host");
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors file not found: {path}", path);
        long fileLength = FileLength.Of(path);
        if (fileLength < 8)
            throw new InvalidDataException($"safetensors {path}: truncated: {fileLength} bytes, too short for the 8-byte header length");

        byte[] headerBytes;
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            Span<byte> len = stackalloc byte[8];
            fs.ReadExactly(len);
            ulong n = BitConverter.ToUInt64(len);
            if (n > SafeTensors.MaxHeaderBytes)
                throw new InvalidDataException($"safetensors {path}: bad header length {n} (limit {SafeTensors.MaxHeaderBytes}); is this a safetensors file?");
            if ((long)n > fileLength - 8)
                throw new InvalidDataException($"safetensors {path}: truncated: the header claims {n} bytes but only {fileLength - 8} follow the length field");
            headerBytes = new byte[n];
            fs.ReadExactly(headerBytes);
        }

        long dataStart = 8 + headerBytes.Length;
        long dataLength = fileLength - dataStart;
        var (tensors, metadata) = ParseHeader(path, headerBytes, dataLength);

        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        try
        {
            var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            return new SafeTensorsFile(path, map, view, dataStart, tensors, metadata);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    private static (List<SafeTensorInfo>, Dictionary<string, string>) ParseHeader(string path, byte[] headerBytes, long dataLength)
    {
        JsonDocument doc;
        try
        {
            string text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(headerBytes);
            doc = JsonDocument.Parse(text);
        }
        catch (Exception e) when (e is JsonException or DecoderFallbackException)
        {
            throw new InvalidDataException($"safetensors {path}: the header is not valid UTF-8 JSON: {e.Message}", e);
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"safetensors {path}: the header must be a JSON object, found {doc.RootElement.ValueKind}");

            var tensors = new List<SafeTensorInfo>();
            var metadata = new Dictionary<string, string>();
            var names = new HashSet<string>();
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (!names.Add(prop.Name))
                    throw new InvalidDataException($"safetensors {path}: key '{prop.Name}' appears twice in the header");
                if (prop.Name == SafeTensors.MetadataKey)
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new InvalidDataException($"safetensors {path}: {SafeTensors.MetadataKey} must be an object of strings");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw new InvalidDataException($"safetensors {path}: {SafeTensors.MetadataKey} entry '{m.Name}' is {m.Value.ValueKind}, must be a string");
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                tensors.Add(ParseEntry(path, prop.Name, prop.Value, dataLength));
            }

            CheckTiling(path, tensors, dataLength);
            return (tensors, metadata);
        }
    }

    private static SafeTensorInfo ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        string where = $"safetensors {path}: tensor '{name}'";
        if (e.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{where}: entry must be an object with dtype, shape and data_offsets");

        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{where}: missing or non-string \"dtype\"");
        string dtName = dt.GetString()!;
        if (!SafeTensors.TryParseDType(dtName, out var dtype))
            throw new InvalidDataException($"{where}: unknown dtype \"{dtName}\" (supported: F32, F64, F16, BF16, I32, I64, I8, U8)");

        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{where}: missing or non-array \"shape\"");
        var shape = new int[sh.GetArrayLength()];
        long numel = 1;
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int v) || v < 0)
                throw new InvalidDataException($"{where}: shape entry {i} is {d.GetRawText()}, must be an integer in [0, 2^31)");
            shape[i++] = v;
            numel *= v;
            if (numel > int.MaxValue)
                throw new InvalidDataException($"{where}: shape {Tensor.ShapeString(shape)} has more than 2^31 - 1 elements");
        }

        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new InvalidDataException($"{where}: \"data_offsets\" must be an array [begin, end]");
        var begin = off[0];
        var end = off[1];
        if (begin.ValueKind != JsonValueKind.Number || !begin.TryGetInt64(out long b) || b < 0
            || end.ValueKind != JsonValueKind.Number || !end.TryGetInt64(out long en) || en < 0)
            throw new InvalidDataException($"{where}: data_offsets {off.GetRawText()} must be two non-negative integers");
        if (en < b)
            throw new InvalidDataException($"{where}: data_offsets [{b}, {en}] end before they begin");
        if (en > dataLength)
            throw new InvalidDataException($"{where}: data_offsets [{b}, {en}] run past the data section ({dataLength} bytes); the file is truncated or the header is wrong");

        long expected = numel * dtype.SizeOf();
        if (en - b != expected)
            throw new InvalidDataException($"{where}: shape {Tensor.ShapeString(shape)} of {dtName} needs {expected} bytes, data_offsets [{b}, {en}] give {en - b}");

        return new SafeTensorInfo(name, dtype, shape, b, en);
    }

    /// <summary>Sorts by offset and checks that the byte ranges cover [0, dataLength) exactly once.</summary>
    private static void CheckTiling(string path, List<SafeTensorInfo> tensors, long dataLength)
    {
        tensors.Sort((x, y) => x.Begin != y.Begin ? x.Begin.CompareTo(y.Begin) : x.End.CompareTo(y.End));
        long pos = 0;
        SafeTensorInfo? prev = null;
        foreach (var t in tensors)
        {
            if (t.Begin < pos)
                throw new InvalidDataException($"safetensors {path}: tensors '{prev!.Name}' [{prev.Begin}, {prev.End}) and '{t.Name}' [{t.Begin}, {t.End}) overlap");
            if (t.Begin > pos)
                throw new InvalidDataException($"safetensors {path}: bytes [{pos}, {t.Begin}) of the data section belong to no tensor (before '{t.Name}')");
            pos = t.End;
            prev = t;
        }
        if (pos != dataLength)
            throw new InvalidDataException($"safetensors {path}: the data section has {dataLength} bytes but the tensors cover {pos}; {dataLength - pos} trailing bytes belong to no tensor");
    }
}
