using System.Text;

namespace ManagedTensor.Models.Formats;

/// <summary>GGUF metadata value type codes.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>A GGUF array value: its element type and the elements (a typed .NET array; nested arrays are GgufArray[]).</summary>
public sealed record GgufArray(GgufValueType ElementType, Array Items);

/// <summary>One tensor's entry: name, dims in ggml order (ne[0] is the contiguous one), type, offset from the data start.</summary>
public sealed record GgufTensorInfo(string Name, long[] Dims, GgmlType Type, long Offset)
{
    public long ElementCount => Dims.Aggregate(1L, (a, b) => a * b);
    public long ByteSize => GgmlTypes.ByteCount(Type, ElementCount);
}

/// <summary>
/// A GGUF (v2/v3) file, memory-mapped. Layout:
///   "GGUF" u32 version, u64 n_tensors, u64 n_kv
///   n_kv x (string key, u32 value type, value)            string = u64 length + UTF-8 bytes; array = u32 type, u64 count, items
///   n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
///   padding to general.alignment (default 32), then the tensor data; each offset is relative to that start and aligned.
/// Every count and length is checked against the bytes left before anything is allocated.
/// </summary>
public sealed class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const int DefaultAlignment = 32;
    private const int MaxArrayDepth = 8, MaxDims = 4;

    private readonly ModelFile _f;
    public string Path => _f.Path;
    public uint Version { get; private set; }
    public Dictionary<string, object> Metadata { get; } = new(StringComparer.Ordinal);
    public List<GgufTensorInfo> Tensors { get; } = [];
    public int Alignment { get; private set; } = DefaultAlignment;
    public long DataOffset { get; private set; }

    private readonly Dictionary<string, GgufTensorInfo> _byName = new(StringComparer.Ordinal);

    private GgufFile(ModelFile f) => _f = f;

    public static GgufFile Open(string path)
    {
        var f = new ModelFile(path);
        var g = new GgufFile(f);
        try { g.ReadHeader(); }
        catch { f.Dispose(); throw; }
        return g;
    }

    public void Dispose() => _f.Dispose();

    private InvalidModelFileException Error(string msg) => _f.Error(msg);

    private void ReadHeader()
    {
        uint magic = _f.ReadU32("magic");
        if (magic != Magic) throw Error($"magic = 0x{magic:X8}, expected 0x{Magic:X8} (\"GGUF\"): not a GGUF file");
        Version = _f.ReadU32("version");
        if (Version is not (2 or 3)) throw Error($"version = {Version}; only GGUF versions 2 and 3 are supported");
        ulong nTensors = _f.ReadU64("n_tensors"), nKv = _f.ReadU64("n_kv");
        // A key-value pair takes at least 8 + 4 + 1 bytes, a tensor info at least 8 + 4 + 8 + 4 + 8.
        if (nKv > (ulong)_f.Remaining / 13) throw Error($"n_kv = {nKv} metadata pairs cannot fit in the {_f.Remaining} bytes left");
        if (nTensors > (ulong)_f.Remaining / 32) throw Error($"n_tensors = {nTensors} tensor infos cannot fit in the {_f.Remaining} bytes left");

        for (ulong i = 0; i < nKv; i++)
        {
            string key = ReadString($"metadata[{i}].key");
            if (key.Length == 0) throw Error($"metadata[{i}].key is empty");
            var type = ReadType($"metadata '{key}' type");
            var value = ReadValue(type, $"metadata '{key}'", 0);
            if (!Metadata.TryAdd(key, value)) throw Error($"metadata key '{key}' appears twice");
        }

        if (Metadata.TryGetValue("general.alignment", out var a))
        {
            if (a is not uint al || al == 0 || (al & (al - 1)) != 0 || al > 1 << 20)
                throw Error($"general.alignment = {a} ({a.GetType().Name}) must be a uint32 power of two up to 2^20");
            Alignment = (int)al;
        }

        for (ulong i = 0; i < nTensors; i++)
        {
            string name = ReadString($"tensor[{i}].name");
            uint nDims = _f.ReadU32($"tensor '{name}' n_dims");
            if (nDims is 0 or > MaxDims) throw Error($"tensor '{name}' n_dims = {nDims} is outside [1, {MaxDims}]");
            var dims = new long[nDims];
            long count = 1;
            for (int d = 0; d < nDims; d++)
            {
                ulong ne = _f.ReadU64($"tensor '{name}' ne[{d}]");
                if (ne == 0 || ne > (ulong)_f.Length * 2) throw Error($"tensor '{name}' ne[{d}] = {ne} is outside [1, {(ulong)_f.Length * 2}] (twice the file length)");
                dims[d] = (long)ne;
                count *= dims[d];
                if (count > _f.Length * 2) throw Error($"tensor '{name}' has {count}+ elements, more than the file could hold");
            }
            uint code = _f.ReadU32($"tensor '{name}' type");
            if (!GgmlTypes.IsSupported(code)) throw Error($"tensor '{name}' type = {code} is not supported (types read: {GgmlTypes.SupportedList})");
            var type = (GgmlType)code;
            int block = GgmlTypes.Layout(type).BlockSize;
            if (dims[0] % block != 0) throw Error($"tensor '{name}' ne[0] = {dims[0]} is not a multiple of the {type} block size {block}");
            ulong off = _f.ReadU64($"tensor '{name}' offset");
            if (off > (ulong)_f.Length) throw Error($"tensor '{name}' offset = {off} is beyond the file length {_f.Length}");
            if (off % (ulong)Alignment != 0) throw Error($"tensor '{name}' offset = {off} is not a multiple of the alignment {Alignment}");
            var info = new GgufTensorInfo(name, dims, type, (long)off);
            if (!_byName.TryAdd(name, info)) throw Error($"tensor name '{name}' appears twice");
            Tensors.Add(info);
        }

        DataOffset = (_f.Position + Alignment - 1) / Alignment * Alignment;
        if (DataOffset > _f.Length) throw Error($"tensor data would start at {DataOffset}, past the end of the file ({_f.Length} bytes): truncated");
        // The tensors tile the data section in the order of their infos, each padded to the alignment: the rule
        // llama.cpp's gguf reader enforces and every writer follows. It cross-checks each tensor's type and shape
        // against its offset, so a type code changed in the header (Q8_0 to F16: the size changes) or an offset
        // moved onto another tensor's bytes is refused instead of read as the wrong bytes.
        long expected = 0;
        foreach (var t in Tensors)
        {
            if (t.Offset != expected)
                throw Error($"tensor '{t.Name}' ({t.Type}, ne = [{string.Join(", ", t.Dims)}]) starts at data offset {t.Offset}, but the tensors before it end at {expected} " +
                            $"(each padded to {Alignment} bytes){(t.Offset < expected ? ", so the two would overlap" : "")}: a type, shape or offset in the header is wrong");
            if (t.ByteSize > _f.Length - DataOffset - t.Offset)
                throw Error($"tensor '{t.Name}' data [{DataOffset + t.Offset}, {DataOffset + t.Offset + t.ByteSize}) ({t.Type}, ne = [{string.Join(", ", t.Dims)}]) runs past the end of the file ({_f.Length} bytes): truncated");
            expected = t.Offset + (t.ByteSize + Alignment - 1) / Alignment * Alignment;
        }
        // Writers pad the last tensor too (or stop at its end); more bytes than that mean the last tensor's type or
        // shape says it is smaller than it was written (a type code changed from F16 to Q8_0, say).
        if (_f.Length - DataOffset > expected)
            throw Error($"{_f.Length - DataOffset - expected} bytes after the last tensor's data belong to no tensor (the data section holds {_f.Length - DataOffset}, the tensors {expected}): " +
                        "a type or shape in the header is wrong, or bytes were appended");
    }

    private GgufValueType ReadType(string field)
    {
        uint t = _f.ReadU32(field);
        if (t > (uint)GgufValueType.Float64) throw Error($"{field} = {t} is not a GGUF value type (0..12)");
        return (GgufValueType)t;
    }

    private string ReadString(string field)
    {
        ulong len = _f.ReadU64(field + " length");
        if (len > (ulong)_f.Remaining) throw Error($"{field}: string length {len} exceeds the {_f.Remaining} bytes left");
        try { return new UTF8Encoding(false, true).GetString(_f.ReadBytes((long)len, field)); }
        catch (DecoderFallbackException) { throw Error($"{field}: string is not valid UTF-8"); }
    }

    private static int MinSize(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.String or GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        _ => 12, // array: u32 type + u64 count
    };

    private object ReadValue(GgufValueType type, string field, int depth)
    {
        switch (type)
        {
            case GgufValueType.UInt8: return _f.Read<byte>(field);
            case GgufValueType.Int8: return _f.Read<sbyte>(field);
            case GgufValueType.UInt16: return _f.Read<ushort>(field);
            case GgufValueType.Int16: return _f.Read<short>(field);
            case GgufValueType.UInt32: return _f.Read<uint>(field);
            case GgufValueType.Int32: return _f.Read<int>(field);
            case GgufValueType.Float32: return _f.Read<float>(field);
            case GgufValueType.UInt64: return _f.Read<ulong>(field);
            case GgufValueType.Int64: return _f.Read<long>(field);
            case GgufValueType.Float64: return _f.Read<double>(field);
            case GgufValueType.Bool:
                byte b = _f.Read<byte>(field);
                return b <= 1 ? b == 1 : throw Error($"{field}: bool byte = {b}, must be 0 or 1");
            case GgufValueType.String: return ReadString(field);
            default:
                if (depth >= MaxArrayDepth) throw Error($"{field}: arrays nested deeper than {MaxArrayDepth}");
                var et = ReadType(field + " element type");
                ulong n = _f.ReadU64(field + " count");
                if (n > (ulong)(_f.Remaining / MinSize(et))) throw Error($"{field}: array count {n} of {et} cannot fit in the {_f.Remaining} bytes left");
                Array items = et switch
                {
                    GgufValueType.UInt8 => new byte[n],
                    GgufValueType.Int8 => new sbyte[n],
                    GgufValueType.UInt16 => new ushort[n],
                    GgufValueType.Int16 => new short[n],
                    GgufValueType.UInt32 => new uint[n],
                    GgufValueType.Int32 => new int[n],
                    GgufValueType.Float32 => new float[n],
                    GgufValueType.Bool => new bool[n],
                    GgufValueType.String => new string[n],
                    GgufValueType.UInt64 => new ulong[n],
                    GgufValueType.Int64 => new long[n],
                    GgufValueType.Float64 => new double[n],
                    _ => new GgufArray[n],
                };
                for (long i = 0; i < (long)n; i++) items.SetValue(ReadValue(et, $"{field}[{i}]", depth + 1), i);
                return new GgufArray(et, items);
        }
    }

    // ---- typed metadata access ----

    public bool Has(string key) => Metadata.ContainsKey(key);

    public string GetString(string key) => Get(key) is string s ? s : throw Error($"metadata '{key}' is {Get(key).GetType().Name}, expected string");

    /// <summary>An integer value of any GGUF integer type, range-checked to int.</summary>
    public int GetInt(string key)
    {
        var v = Get(key);
        long x = v switch
        {
            byte a => a,
            sbyte a => a,
            ushort a => a,
            short a => a,
            uint a => a,
            int a => a,
            long a => a,
            ulong a => a > long.MaxValue ? throw Error($"metadata '{key}' = {a} is too large") : (long)a,
            _ => throw Error($"metadata '{key}' is {v.GetType().Name}, expected an integer"),
        };
        return x is >= int.MinValue and <= int.MaxValue ? (int)x : throw Error($"metadata '{key}' = {x} does not fit in int32");
    }

    public int GetInt(string key, int fallback) => Has(key) ? GetInt(key) : fallback;

    public float GetFloat(string key) => Get(key) switch
    {
        float f => f,
        double d => (float)d,
        var v => throw Error($"metadata '{key}' is {v.GetType().Name}, expected float32"),
    };

    public float GetFloat(string key, float fallback) => Has(key) ? GetFloat(key) : fallback;

    public T[] GetArray<T>(string key) => Get(key) is GgufArray { Items: T[] items } ? items
        : throw Error($"metadata '{key}' is {Describe(Get(key))}, expected an array of {typeof(T).Name}");

    private static string Describe(object v) => v is GgufArray a ? $"an array of {a.ElementType}" : v.GetType().Name;

    private object Get(string key) => Metadata.TryGetValue(key, out var v) ? v : throw Error($"metadata key '{key}' is missing");

    // ---- tensor data ----

    public GgufTensorInfo Tensor(string name) => _byName.TryGetValue(name, out var t) ? t : throw Error($"tensor '{name}' is missing");

    public bool HasTensor(string name) => _byName.ContainsKey(name);

    /// <summary>The stored bytes of a tensor (a view into the mapped file).</summary>
    public ReadOnlySpan<byte> TensorBytes(GgufTensorInfo t) => _f.Slice(DataOffset + t.Offset, t.ByteSize, $"tensor '{t.Name}' data");

    /// <summary>A tensor decoded to float32, in ggml order (ne[0] fastest).</summary>
    public float[] ReadF32(string name)
    {
        var t = Tensor(name);
        var dst = new float[t.ElementCount];
        GgmlTypes.Dequantize(t.Type, TensorBytes(t), dst);
        return dst;
    }

    /// <summary>A 2-D tensor with ne = [cols, rows] as a (rows, cols) CPU tensor in its stored format (block formats stay blocks).</summary>
    public ManagedTensor.Tensor Matrix(string name, int rows, int cols)
    {
        var t = Tensor(name);
        if (t.Dims.Length != 2 || t.Dims[0] != cols || t.Dims[1] != rows)
            throw Error($"tensor '{name}' has ne = [{string.Join(", ", t.Dims)}], expected [{cols}, {rows}]");
        return IO.TensorBytes.ToTensor(TensorBytes(t), [rows, cols], GgmlTypes.ToDType(t.Type), name);
    }

    /// <summary>A 1-D float tensor of exactly <paramref name="n"/> values.</summary>
    public float[] Vector(string name, int n)
    {
        var t = Tensor(name);
        if (t.ElementCount != n) throw Error($"tensor '{name}' has {t.ElementCount} elements, expected {n}");
        return ReadF32(name);
    }
}
