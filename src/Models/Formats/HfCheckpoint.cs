using System.Text.Json;
using ManagedTensor.Models.IO;

namespace ManagedTensor.Models.Formats;

/// <summary>
/// A Hugging Face model directory: config.json, and the weights in model.safetensors or split across shards listed
/// in model.safetensors.index.json:
/// <code>
///   {"metadata": {"total_size": N}, "weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors", ...}}
/// </code>
/// Every shard is opened (its header validated) up front; a tensor's bytes are read when asked for, after its dtype and
/// shape are checked against what the caller expects. Errors name the tensor and the file that holds (or should hold) it.
/// </summary>
public sealed class HfCheckpoint : IDisposable
{
    public const string ConfigFile = "config.json", SingleFile = "model.safetensors", IndexFile = "model.safetensors.index.json";

    public string Directory { get; }
    public string ConfigPath { get; }
    public HfJson Config { get; }

    /// <summary>model.safetensors or the index: the file a missing tensor is reported against.</summary>
    public string WeightsPath { get; }

    private readonly List<SafeTensorsFile> _files = [];
    private readonly Dictionary<string, SafeTensorsFile> _byTensor = new(StringComparer.Ordinal);
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    private HfCheckpoint(string dir, HfJson config, string weightsPath)
    {
        Directory = dir; Config = config; ConfigPath = config.Path; WeightsPath = weightsPath;
    }

    /// <summary>True when <paramref name="path"/> is a directory (a checkpoint, or an error naming what it lacks) or a config.json file.</summary>
    public static bool IsCheckpoint(string path) =>
        System.IO.Directory.Exists(path) || System.IO.Path.GetFileName(path).Equals(ConfigFile, StringComparison.OrdinalIgnoreCase);

    /// <summary>The checkpoint directory of <paramref name="path"/> (the directory itself, or the one holding config.json).</summary>
    public static string DirectoryOf(string path) =>
        System.IO.Directory.Exists(path) ? System.IO.Path.GetFullPath(path) : System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;

    /// <summary>Opens the checkpoint at <paramref name="path"/> (a directory or its config.json) and validates config.json, the index and every shard header.</summary>
    public static HfCheckpoint Open(string path)
    {
        string dir = DirectoryOf(path);
        var config = HfJson.Load(System.IO.Path.Combine(dir, ConfigFile));
        string single = System.IO.Path.Combine(dir, SingleFile), index = System.IO.Path.Combine(dir, IndexFile);
        HfCheckpoint ck;
        if (File.Exists(single))
        {
            ck = new HfCheckpoint(dir, config, single);
            try { ck.AddShard(single, null); }
            catch { ck.Dispose(); throw; }
        }
        else if (File.Exists(index))
        {
            ck = new HfCheckpoint(dir, config, index);
            try { ck.ReadIndex(index); }
            catch { ck.Dispose(); throw; }
        }
        else
        {
            string others = string.Join(", ", System.IO.Directory.EnumerateFiles(dir).Select(System.IO.Path.GetFileName)
                .Where(f => f!.EndsWith(".bin", StringComparison.Ordinal) || f.EndsWith(".pt", StringComparison.Ordinal) || f.EndsWith(".pth", StringComparison.Ordinal)));
            throw new InvalidModelFileException(dir, $"no {SingleFile} or {IndexFile} in the checkpoint directory" +
                (others.Length > 0 ? $" (found {others}: PyTorch pickles are not read; convert them to safetensors)" : ""));
        }
        return ck;
    }

    private void ReadIndex(string index)
    {
        var json = HfJson.Load(index);
        if (!json.Root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            throw new InvalidModelFileException(index, "\"weight_map\" is missing or not an object of tensor name -> shard file");
        var shardOf = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var e in map.EnumerateObject())
        {
            if (e.Value.ValueKind != JsonValueKind.String)
                throw new InvalidModelFileException(index, $"weight_map[\"{e.Name}\"] is {e.Value.ValueKind}, expected a shard file name");
            string file = e.Value.GetString()!;
            if (file.Length == 0 || file != System.IO.Path.GetFileName(file) || file is "." or "..")
                throw new InvalidModelFileException(index, $"weight_map[\"{e.Name}\"] = \"{file}\" must name a file in the checkpoint directory");
            if (!shardOf.TryGetValue(file, out var names)) shardOf[file] = names = [];
            names.Add(e.Name);
        }
        if (shardOf.Count == 0) throw new InvalidModelFileException(index, "weight_map lists no tensors");
        foreach (var (file, names) in shardOf)
        {
            string shard = System.IO.Path.Combine(Directory, file);
            if (!File.Exists(shard))
                throw new InvalidModelFileException(index, $"shard '{file}' (holding '{names[0]}' and {names.Count - 1} more) does not exist in {Directory}");
            AddShard(shard, names);
        }
    }

    /// <summary>Opens one shard; <paramref name="listed"/> (from the index) must all be in it, and only they are taken from it.</summary>
    private void AddShard(string shard, List<string>? listed)
    {
        SafeTensorsFile f;
        try { f = SafeTensorsFile.Open(shard); }
        catch (InvalidDataException e) { throw new InvalidModelFileException(shard, e.Message.Replace($"safetensors {shard}: ", "")); }
        _files.Add(f);
        foreach (var name in listed ?? f.Tensors.Select(t => t.Name))
        {
            if (!f.Contains(name))
                throw new InvalidModelFileException(shard, $"tensor '{name}' is missing: {IndexFile} says this shard holds it");
            _byTensor[name] = f;
        }
    }

    public IEnumerable<string> TensorNames => _byTensor.Keys;

    public bool Has(string name) => _byTensor.ContainsKey(name);

    /// <summary>Tensors that no Matrix/Vector call has read (a loader reports these as unexpected).</summary>
    public IEnumerable<string> Unread => _byTensor.Keys.Where(n => !_read.Contains(n));

    private (SafeTensorsFile File, SafeTensorInfo Info) Find(string name)
    {
        if (!_byTensor.TryGetValue(name, out var f))
            throw new InvalidModelFileException(WeightsPath, $"tensor '{name}' is missing");
        _read.Add(name);
        return (f, f.Info(name));
    }

    private static GgmlType FloatType(SafeTensorsFile f, SafeTensorInfo t) => t.DType switch
    {
        DType.F32 => GgmlType.F32,
        DType.F16 => GgmlType.F16,
        DType.BF16 => GgmlType.BF16,
        _ => throw new InvalidModelFileException(f.Path, $"tensor '{t.Name}' has dtype {SafeTensors.DTypeName(t.DType)}; weights must be F32, F16 or BF16"),
    };

    /// <summary>A float weight of exactly <paramref name="shape"/> as a CPU tensor in its stored dtype (F32, F16 or BF16: 16-bit weights stay 16-bit).</summary>
    public Tensor Weight(string name, int[] shape, string what = "")
    {
        var (f, t) = Find(name);
        FloatType(f, t);
        if (!t.Shape.AsSpan().SequenceEqual(shape))
            throw new InvalidModelFileException(f.Path, $"tensor '{name}' has shape {Tensor.ShapeString(t.Shape)}, expected {Tensor.ShapeString(shape)}{(what.Length > 0 ? " = " + what : "")}");
        return f.Load(name);
    }

    /// <summary>A float tensor of exactly <paramref name="shape"/> as a float32 CPU tensor (F16 and BF16 are converted).</summary>
    public Tensor F32(string name, int[] shape, string what = "")
    {
        var (f, t) = Find(name);
        var type = FloatType(f, t);
        if (!t.Shape.AsSpan().SequenceEqual(shape))
            throw new InvalidModelFileException(f.Path, $"tensor '{name}' has shape {Tensor.ShapeString(t.Shape)}, expected {Tensor.ShapeString(shape)}{(what.Length > 0 ? " = " + what : "")}");
        var v = new float[shape.Aggregate(1L, (a, b) => a * b)];
        GgmlTypes.Dequantize(type, f.ReadBytes(name), v);
        var tensor = Tensor.FromArray(v, shape);
        tensor.Name = name;
        return tensor;
    }

    /// <summary>The header entry of <paramref name="name"/> (dtype, shape) without reading it.</summary>
    public SafeTensorInfo InfoOf(string name) =>
        _byTensor.TryGetValue(name, out var f) ? f.Info(name) : throw new InvalidModelFileException(WeightsPath, $"tensor '{name}' is missing");

    /// <summary>The file that holds <paramref name="name"/>.</summary>
    public string FileOf(string name) => _byTensor.TryGetValue(name, out var f) ? f.Path : WeightsPath;

    /// <summary>Marks <paramref name="name"/> as deliberately unused (e.g. a tied lm_head, rotary inv_freq buffers).</summary>
    public void Skip(string name) => _read.Add(name);

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}

/// <summary>
/// A small JSON file (config.json, tokenizer_config.json, ...) with typed getters whose errors name the file, the key and
/// the value found, e.g. "config.json: 'hidden_size' is "32" (String), expected an integer".
/// </summary>
public sealed class HfJson
{
    public string Path { get; }
    public JsonElement Root { get; }
    private readonly string _prefix; // "rope_scaling." for a nested object, so errors name the full key

    private HfJson(string path, JsonElement root, string prefix = "") { Path = path; Root = root; _prefix = prefix; }

    /// <summary>Files above this are refused before being read (real configs are a few kilobytes; tokenizer.json a few megabytes).</summary>
    public const long MaxBytes = 64L << 20;

    public static HfJson Load(string path)
    {
        if (!File.Exists(path)) throw new InvalidModelFileException(path, "file not found");
        long len = IO.FileLength.Of(path);
        if (len > MaxBytes) throw new InvalidModelFileException(path, $"{len} bytes is more than the {MaxBytes} a JSON config may have");
        string text;
        try
        {
            // JsonDocument checks UTF-8 only where it must; a string with invalid bytes would fail later, when read.
            text = new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(File.ReadAllBytes(path));
        }
        catch (System.Text.DecoderFallbackException) { throw new InvalidModelFileException(path, "not valid UTF-8 text"); }
        try
        {
            using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 64 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidModelFileException(path, $"the top level is {doc.RootElement.ValueKind}, expected a JSON object");
            return new HfJson(path, doc.RootElement.Clone());
        }
        catch (JsonException e) { throw new InvalidModelFileException(path, $"not valid JSON: {e.Message}"); }
    }

    /// <summary>The value at <paramref name="key"/>, or null when absent or JSON null.</summary>
    public JsonElement? Get(string key) =>
        Root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public bool Has(string key) => Get(key) is not null;

    public InvalidModelFileException Error(string message) => new(Path, message);

    private InvalidModelFileException Wrong(string key, JsonElement v, string expected) =>
        Error($"'{_prefix}{key}' is {Show(v)}, expected {expected}");

    private static string Show(JsonElement v)
    {
        string raw = v.GetRawText();
        return $"{(raw.Length > 60 ? raw[..60] + "..." : raw)} ({v.ValueKind})";
    }

    public int GetInt(string key) => Get(key) is { } v ? AsInt(key, v) : throw Error($"'{_prefix}{key}' is missing");

    public int GetInt(string key, int fallback) => Get(key) is { } v ? AsInt(key, v) : fallback;

    public int AsInt(string key, JsonElement v) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Wrong(key, v, "an integer in the int32 range");

    public float GetFloat(string key, float fallback) => Get(key) is { } v ? AsFloat(key, v) : fallback;

    public float AsFloat(string key, JsonElement v) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && double.IsFinite(d) && Math.Abs(d) <= float.MaxValue
            ? (float)d : throw Wrong(key, v, "a finite number");

    public bool GetBool(string key, bool fallback) => Get(key) switch
    {
        null => fallback,
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        { } v => throw Wrong(key, v, "true or false"),
    };

    public string? GetString(string key) => Get(key) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } v => v.GetString(),
        { } v => throw Wrong(key, v, "a string"),
    };

    /// <summary>An integer or a list of integers (eos_token_id is either).</summary>
    public int[] GetIntList(string key) => Get(key) switch
    {
        null => [],
        { ValueKind: JsonValueKind.Array } v => v.EnumerateArray().Select(e => AsInt(key, e)).ToArray(),
        { } v => [AsInt(key, v)],
    };

    /// <summary>A nested object as its own HfJson (same file, for error messages), or null when absent.</summary>
    public HfJson? GetObject(string key) => Get(key) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Object } v => new HfJson(Path, v, _prefix + key + "."),
        { } v => throw Wrong(key, v, "an object"),
    };
}
