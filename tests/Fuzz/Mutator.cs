using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace ManagedTensor.Tests.Fuzz;

/// <summary>
/// Seeded mutations of a file's bytes, of the kinds that break loaders: bit flips, bytes and integers set to
/// boundary values, truncations, insertions, deleted and repeated chunks. Most land in the header region, where a
/// changed byte changes a count, a size, an offset or a type (a changed weight only changes the output).
/// JSON files (configs, tokenizer.json, safetensors headers and the checkpoint's metadata) are also mutated as
/// JSON: a value replaced by one of another kind or out of range, a key removed, so the parser succeeds and the
/// loader's own checks are what is tested.
/// </summary>
public static class Mutator
{
    private static readonly long[] Interesting =
    [
        0, 1, -1, 2, 3, 7, 8, 16, 31, 32, 33, 63, 64, 255, 256, 1023, 1024, 4096, 65535, 65536,
        int.MaxValue, int.MinValue, (long)int.MaxValue + 1, uint.MaxValue, long.MaxValue, long.MinValue, 1L << 40, 1L << 53,
    ];

    /// <summary>The mutated bytes and a short description (for the report, to reproduce a failure by hand).</summary>
    public static (byte[] Bytes, string What) Binary(byte[] src, Random rng, int headerBytes)
    {
        int Pos(int len) => len == 0 ? 0 : rng.NextDouble() < 0.75 ? rng.Next(Math.Min(len, Math.Max(1, headerBytes))) : rng.Next(len);
        var b = (byte[])src.Clone();
        switch (rng.Next(8))
        {
            case 0:
                {
                    int flips = 1 + rng.Next(8);
                    for (int i = 0; i < flips && b.Length > 0; i++) b[Pos(b.Length)] ^= (byte)(1 << rng.Next(8));
                    return (b, $"{flips} bit flips");
                }
            case 1:
                {
                    int at = Pos(b.Length);
                    byte v = (byte)new[] { 0x00, 0xFF, 0x7F, 0x80, 0x01, 0x20, 0x22, 0x7B }[rng.Next(8)];
                    if (b.Length > 0) b[at] = v;
                    return (b, $"byte {at} = 0x{v:X2}");
                }
            case 2:
            case 3:
                {
                    // A 4- or 8-byte little-endian integer at an aligned offset: counts, sizes and offsets are stored so.
                    int width = rng.Next(2) == 0 ? 4 : 8;
                    if (b.Length < width) return (b, "unchanged (too short)");
                    int at = Math.Min(Pos(b.Length) / width * width, b.Length - width);
                    long v = Interesting[rng.Next(Interesting.Length)];
                    if (width == 4) BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(at), (int)v);
                    else BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(at), v);
                    return (b, $"int{width * 8} at {at} = {v}");
                }
            case 4:
                {
                    int cut = rng.Next(Math.Max(1, b.Length));
                    return (b[..cut], $"truncated to {cut}");
                }
            case 5:
                {
                    int at = Pos(b.Length), n = 1 + rng.Next(64);
                    var extra = new byte[n];
                    rng.NextBytes(extra);
                    return ([.. b[..at], .. extra, .. b[at..]], $"{n} random bytes inserted at {at}");
                }
            case 6:
                {
                    int at = Pos(b.Length), n = Math.Min(1 + rng.Next(256), b.Length - at);
                    return ([.. b[..at], .. b[(at + n)..]], $"{n} bytes deleted at {at}");
                }
            default:
                {
                    int at = Pos(b.Length), n = Math.Min(1 + rng.Next(256), b.Length - at);
                    return ([.. b[..(at + n)], .. b[at..]], $"{n} bytes at {at} repeated");
                }
        }
    }

    private static readonly string[] Replacements =
        ["null", "[]", "{}", "0", "-1", "1", "5", "2147483648", "-2147483649", "1e300", "0.5", "\"\"", "\"x\"", "true", "9007199254740993", "\"NaN\"", "[1, 2]"];

    /// <summary>One JSON value somewhere in <paramref name="json"/> replaced or removed; null when the text is not JSON.</summary>
    public static (string Json, string What)? Json(string json, Random rng)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(json); }
        catch (System.Text.Json.JsonException) { return null; }
        if (root is null) return null;
        var nodes = new List<JsonNode>();
        void Walk(JsonNode n)
        {
            nodes.Add(n);
            if (n is JsonObject o) foreach (var (_, v) in o) { if (v is not null) Walk(v); }
            else if (n is JsonArray a) foreach (var v in a) { if (v is not null) Walk(v); }
        }
        Walk(root);
        var target = nodes[rng.Next(nodes.Count)];
        if (target.Parent is null) return (Replacements[rng.Next(Replacements.Length)], "the whole document replaced");
        string path = target.GetPath();
        if (rng.Next(6) == 0 && target.Parent is JsonObject parentObject)
        {
            parentObject.Remove(target.GetPropertyName());
            return (root.ToJsonString(), $"{path} removed");
        }
        string replacement = Replacements[rng.Next(Replacements.Length)];
        var value = JsonNode.Parse(replacement);
        switch (target.Parent)
        {
            case JsonObject o: o[target.GetPropertyName()] = value; break;
            case JsonArray a: a[target.GetElementIndex()] = value; break;
        }
        return (root.ToJsonString(), $"{path} = {replacement}");
    }

    /// <summary>
    /// A safetensors file with its JSON header mutated as JSON: a tensor entry's dtype, shape or offsets, or (inside
    /// "__metadata__", whose values are JSON text themselves) a value of a config. The data section is kept.
    /// </summary>
    public static (byte[] Bytes, string What)? SafeTensorsHeader(byte[] file, Random rng)
    {
        if (file.Length < 8) return null;
        long n = BinaryPrimitives.ReadInt64LittleEndian(file);
        if (n <= 0 || n > file.Length - 8) return null;
        string header = Encoding.UTF8.GetString(file, 8, (int)n);
        string mutated;
        string what;
        var root = JsonNode.Parse(header)!.AsObject();
        if (root["__metadata__"] is JsonObject meta && meta.Count > 0 && rng.Next(2) == 0)
        {
            var key = meta.Select(kv => kv.Key).ElementAt(rng.Next(meta.Count));
            var inner = Json(meta[key]!.GetValue<string>(), rng);
            if (inner is null) return null;
            meta[key] = inner.Value.Json;
            mutated = root.ToJsonString();
            what = $"__metadata__.{key}: {inner.Value.What}";
        }
        else
        {
            var m = Json(header, rng);
            if (m is null) return null;
            (mutated, what) = m.Value;
        }
        var bytes = Encoding.UTF8.GetBytes(mutated);
        var result = new byte[8 + bytes.Length + file.Length - 8 - n];
        BinaryPrimitives.WriteInt64LittleEndian(result, bytes.Length);
        bytes.CopyTo(result, 8);
        file.AsSpan(8 + (int)n).CopyTo(result.AsSpan(8 + bytes.Length));
        return (result, "header " + what);
    }
}
