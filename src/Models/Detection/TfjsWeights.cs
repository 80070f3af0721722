using System.Text.Json;
using ManagedTensor.Models.Formats;

namespace ManagedTensor.Models.Detection;

/// <summary>
/// A TensorFlow.js weights manifest (`*-weights_manifest.json`) and its binary shards, as face-api ships its
/// models: a JSON array of groups, each `{ "paths": [shard files], "weights": [{ name, shape, dtype,
/// quantization? }] }`. A group's shards are one byte stream cut into files; its weights lie in it back to back,
/// in manifest order. A quantized weight stores each value as an unsigned integer q and means
/// q * scale + min (tf.io.decodeWeights), computed in double and stored as float32, as TF.js does.
/// Every name, shape and size is checked against the bytes present before anything is decoded.
/// </summary>
public static class TfjsWeights
{
    /// <summary>Float32 values and TF.js shape (HWIO for conv filters) of every weight, by name.</summary>
    public static Dictionary<string, (int[] Shape, float[] Values)> Read(string manifestPath)
    {
        if (!File.Exists(manifestPath)) throw new FileNotFoundException($"{manifestPath}: no such weights manifest", manifestPath);
        string dir = Path.GetDirectoryName(Path.GetFullPath(manifestPath))!;
        JsonElement root;
        try
        {
            root = JsonDocument.Parse(File.ReadAllBytes(manifestPath)).RootElement;
        }
        catch (JsonException e)
        {
            throw new InvalidModelFileException(manifestPath, $"not a JSON weights manifest ({e.Message})");
        }
        if (root.ValueKind != JsonValueKind.Array) throw new InvalidModelFileException(manifestPath, "expected a JSON array of weight groups");
        var result = new Dictionary<string, (int[], float[])>();
        foreach (var group in root.EnumerateArray())
        {
            byte[] bytes = ReadShards(manifestPath, dir, Field(group, "paths", JsonValueKind.Array, manifestPath));
            long offset = 0;
            foreach (var w in Field(group, "weights", JsonValueKind.Array, manifestPath).EnumerateArray())
            {
                string name = Field(w, "name", JsonValueKind.String, manifestPath).GetString()!;
                int[] shape = Field(w, "shape", JsonValueKind.Array, manifestPath).EnumerateArray().Select(d => d.GetInt32()).ToArray();
                if (shape.Any(d => d <= 0)) throw new InvalidModelFileException(manifestPath, $"weight {name}: shape [{string.Join(", ", shape)}] has a non-positive size");
                long count = shape.Aggregate(1L, (a, d) => a * d);
                var (values, size) = Decode(w, name, count, bytes, offset, manifestPath);
                offset += size;
                if (!result.TryAdd(name, (shape, values))) throw new InvalidModelFileException(manifestPath, $"weight {name} appears twice");
            }
            if (offset != bytes.Length)
                throw new InvalidModelFileException(manifestPath, $"the weights take {offset} bytes but the shards hold {bytes.Length}");
        }
        return result;
    }

    private static (float[] Values, long Bytes) Decode(JsonElement w, string name, long count, byte[] bytes, long offset, string file)
    {
        string dtype = Field(w, "dtype", JsonValueKind.String, file).GetString()!;
        if (dtype != "float32") throw new InvalidModelFileException(file, $"weight {name}: dtype {dtype} is not supported (float32, optionally quantized)");
        string stored = "float32";
        double scale = 1, min = 0;
        if (w.TryGetProperty("quantization", out var q))
        {
            stored = Field(q, "dtype", JsonValueKind.String, file).GetString()!;
            scale = Field(q, "scale", JsonValueKind.Number, file).GetDouble();
            min = Field(q, "min", JsonValueKind.Number, file).GetDouble();
        }
        int width = stored switch
        {
            "uint8" => 1,
            "uint16" => 2,
            "float32" => 4,
            _ => throw new InvalidModelFileException(file, $"weight {name}: quantization dtype {stored} is not supported (uint8, uint16)"),
        };
        long size = count * width;
        if (offset + size > bytes.Length)
            throw new InvalidModelFileException(file, $"weight {name} needs bytes {offset}..{offset + size} but the shards hold {bytes.Length}");
        var values = new float[count];
        var src = bytes.AsSpan((int)offset, (int)size);
        for (int i = 0; i < count; i++)
            values[i] = width switch
            {
                1 => (float)(src[i] * scale + min),
                2 => (float)(BitConverter.ToUInt16(src.Slice(2 * i, 2)) * scale + min),
                _ => BitConverter.ToSingle(src.Slice(4 * i, 4)),
            };
        return (values, size);
    }

    private static byte[] ReadShards(string manifest, string dir, JsonElement paths)
    {
        using var all = new MemoryStream();
        foreach (var p in paths.EnumerateArray())
        {
            string shard = Path.Combine(dir, p.GetString() ?? "");
            if (!File.Exists(shard)) throw new InvalidModelFileException(manifest, $"weights shard {p.GetString()} is missing (looked for {shard})");
            using var s = File.OpenRead(shard);
            s.CopyTo(all);
        }
        return all.ToArray();
    }

    private static JsonElement Field(JsonElement e, string name, JsonValueKind kind, string file)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(name, out var v) || v.ValueKind != kind)
            throw new InvalidModelFileException(file, $"expected a field \"{name}\" ({kind.ToString().ToLowerInvariant()}) in {Shorten(e.GetRawText())}");
        return v;
    }

    private static string Shorten(string s) => s.Length <= 60 ? s : s[..60] + "...";
}
