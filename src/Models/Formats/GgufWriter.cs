using System.Text;

namespace ManagedTensor.Models.Formats;

/// <summary>
/// Writes a GGUF v3 file: metadata (any GGUF value type, given as the matching .NET type or a <see cref="GgufArray"/>),
/// then tensors (already encoded, see <see cref="GgmlTypes.Quantize"/>), each aligned to <see cref="Alignment"/>.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<(string Key, object Value)> _kv = [];
    private readonly List<(string Name, long[] Dims, GgmlType Type, byte[] Data)> _tensors = [];

    public int Alignment { get; }

    public GgufWriter(int alignment = GgufFile.DefaultAlignment)
    {
        if (alignment <= 0 || (alignment & (alignment - 1)) != 0) throw new ArgumentException($"alignment {alignment} must be a power of two");
        Alignment = alignment;
        if (alignment != GgufFile.DefaultAlignment) Add("general.alignment", (uint)alignment);
    }

    public GgufWriter Add(string key, object value)
    {
        TypeOf(value);
        _kv.Add((key, value));
        return this;
    }

    /// <summary>Adds a tensor with dims in ggml order (ne[0] contiguous) and its encoded bytes.</summary>
    public GgufWriter AddTensor(string name, long[] dims, GgmlType type, byte[] data)
    {
        long n = dims.Aggregate(1L, (a, b) => a * b);
        if (GgmlTypes.ByteCount(type, n) != data.Length) throw new ArgumentException($"tensor '{name}': {data.Length} bytes, {type} x {n} needs {GgmlTypes.ByteCount(type, n)}");
        _tensors.Add((name, dims, type, data));
        return this;
    }

    /// <summary>Encodes float32 values as <paramref name="type"/> and adds them.</summary>
    public GgufWriter AddTensor(string name, long[] dims, GgmlType type, ReadOnlySpan<float> values) => AddTensor(name, dims, type, GgmlTypes.Quantize(type, values));

    private static GgufValueType TypeOf(object v) => v switch
    {
        byte => GgufValueType.UInt8,
        sbyte => GgufValueType.Int8,
        ushort => GgufValueType.UInt16,
        short => GgufValueType.Int16,
        uint => GgufValueType.UInt32,
        int => GgufValueType.Int32,
        float => GgufValueType.Float32,
        bool => GgufValueType.Bool,
        string => GgufValueType.String,
        GgufArray => GgufValueType.Array,
        ulong => GgufValueType.UInt64,
        long => GgufValueType.Int64,
        double => GgufValueType.Float64,
        _ => throw new ArgumentException($"{v.GetType().Name} has no GGUF value type"),
    };

    private static void WriteString(BinaryWriter w, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)b.Length);
        w.Write(b);
    }

    private static void WriteValue(BinaryWriter w, object v)
    {
        switch (v)
        {
            case byte x: w.Write(x); break;
            case sbyte x: w.Write(x); break;
            case ushort x: w.Write(x); break;
            case short x: w.Write(x); break;
            case uint x: w.Write(x); break;
            case int x: w.Write(x); break;
            case float x: w.Write(x); break;
            case bool x: w.Write((byte)(x ? 1 : 0)); break;
            case string x: WriteString(w, x); break;
            case ulong x: w.Write(x); break;
            case long x: w.Write(x); break;
            case double x: w.Write(x); break;
            case GgufArray a:
                w.Write((uint)a.ElementType);
                w.Write((ulong)a.Items.Length);
                foreach (var item in a.Items)
                {
                    if (TypeOf(item!) != a.ElementType) throw new ArgumentException($"array of {a.ElementType} holds a {item!.GetType().Name}");
                    WriteValue(w, item);
                }
                break;
        }
    }

    /// <summary>Writes the file atomically: into PATH.tmp, then renamed over PATH (a reader never sees half a file).</summary>
    public void Write(string path)
    {
        string tmp = path + ".tmp";
        try
        {
            using (var fs = File.Create(tmp)) WriteTo(fs);
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
    }

    private void WriteTo(FileStream fs)
    {
        using var w = new BinaryWriter(fs);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_kv.Count);
        foreach (var (key, value) in _kv)
        {
            WriteString(w, key);
            w.Write((uint)TypeOf(value));
            WriteValue(w, value);
        }
        long offset = 0;
        var offsets = new long[_tensors.Count];
        for (int i = 0; i < _tensors.Count; i++)
        {
            var (name, dims, type, data) = _tensors[i];
            WriteString(w, name);
            w.Write((uint)dims.Length);
            foreach (long d in dims) w.Write((ulong)d);
            w.Write((uint)type);
            offsets[i] = offset;
            w.Write((ulong)offset);
            offset = Align(offset + data.Length);
        }
        Pad(w);
        long start = fs.Position;
        for (int i = 0; i < _tensors.Count; i++)
        {
            fs.Position = start + offsets[i]; // padding between tensors is written as zeros by the positioned writes below
            w.Write(_tensors[i].Data);
            Pad(w);
        }
    }

    private long Align(long x) => (x + Alignment - 1) / Alignment * Alignment;

    private void Pad(BinaryWriter w)
    {
        w.Flush();
        long pad = Align(w.BaseStream.Position) - w.BaseStream.Position;
        for (long i = 0; i < pad; i++) w.Write((byte)0);
    }
}
