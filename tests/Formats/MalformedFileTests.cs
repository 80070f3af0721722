using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Tokenizers;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Formats;

/// <summary>
/// Corrupted variants of each format (truncations, bad magic and versions, absurd counts and sizes, bad type codes,
/// out-of-range offsets): every one must fail with <see cref="InvalidModelFileException"/> naming the file,
/// quickly and without allocating more than a small multiple of the file's size.
/// </summary>
public sealed class MalformedFileTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"mt-bad-{Guid.NewGuid():N}");
    public MalformedFileTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, true);

    private int _n;

    /// <summary>Writes <paramref name="bytes"/> to a fresh file and checks that <paramref name="load"/> rejects it properly.</summary>
    private void AssertRejected(string what, byte[] bytes, Action<string> load)
    {
        string path = Path.Combine(_dir, $"variant{_n++}.bin");
        File.WriteAllBytes(path, bytes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var sw = Stopwatch.StartNew();
        var e = Record.Exception(() => load(path));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(e is InvalidModelFileException, $"{what}: expected InvalidModelFileException, got {(e is null ? "no exception" : e.GetType().Name + ": " + e.Message)}");
        Assert.Contains(path, e!.Message);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"{what}: took {sw.Elapsed}");
        Assert.True(allocated < 4L * bytes.Length + (16 << 20), $"{what}: allocated {allocated:N0} bytes for a {bytes.Length:N0}-byte file");
    }

    private static byte[] With(byte[] src, Action<byte[]> edit)
    {
        var b = (byte[])src.Clone();
        edit(b);
        return b;
    }

    private static byte[] Truncate(byte[] src, int n) => src.AsSpan(0, n).ToArray();

    private static IEnumerable<int> Cuts(int length, int count) =>
        new[] { 0, 1, 3, 4, 7, 8, 12, 16, 20, 24, 27, 28, 29 }.Where(c => c < length)
            .Concat(Enumerable.Range(1, count).Select(i => (int)((long)length * i / (count + 1))))
            .Append(length - 1).Distinct();

    [Fact]
    public void Llama2cCheckpointVariantsAreRejected()
    {
        var good = File.ReadAllBytes(RepoPaths.Stories260K);
        int n0 = _n;
        foreach (int cut in Cuts(good.Length, 20))
            AssertRejected($"truncated at {cut}", Truncate(good, cut), p => Llama2c.Load(p));
        AssertRejected("one trailing byte", [.. good, 0], p => Llama2c.Load(p));
        string[] fields = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
        int[] values = [0, -1, 3, int.MaxValue, int.MinValue, 1 << 20, 100_000_000];
        for (int f = 0; f < fields.Length; f++)
            foreach (int v in values)
                AssertRejected($"{fields[f]} = {v}", With(good, b => BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4 * f), v)), p => Llama2c.Load(p));
        AssertRejected("negative vocab (separate classifier missing)", With(good, b => BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(20), -512)), p => Llama2c.Load(p));
        Assert.True(_n - n0 >= 50, $"only {_n - n0} variants");
    }

    [Fact]
    public void TokenizerBinVariantsAreRejected()
    {
        var good = File.ReadAllBytes(RepoPaths.Tok512);
        int n0 = _n;
        void Load(string p) => LlamaTokenizer.LoadLlama2c(p, 512);
        foreach (int cut in Cuts(good.Length, 40))
            AssertRejected($"truncated at {cut}", Truncate(good, cut), Load);
        AssertRejected("trailing byte", [.. good, 1], Load);
        AssertRejected("vocab 511 vs file", good, p => LlamaTokenizer.LoadLlama2c(p, 511));
        AssertRejected("vocab 513 vs file", good, p => LlamaTokenizer.LoadLlama2c(p, 513));
        AssertRejected("vocab 2^30 vs file", good, p => LlamaTokenizer.LoadLlama2c(p, 1 << 30));
        foreach (int v in new[] { 0, -1, int.MaxValue, 1 << 20 })
            AssertRejected($"max_token_length = {v}", With(good, b => BinaryPrimitives.WriteInt32LittleEndian(b, v)), Load);
        // token 0 is at offset 4: score, then its length at 8
        foreach (int v in new[] { -1, int.MaxValue, int.MinValue, 8, 100_000 })
            AssertRejected($"token 0 length = {v}", With(good, b => BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(8), v)), Load);
        AssertRejected("token 0 score NaN", With(good, b => BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(4), float.NaN)), Load);
        Assert.True(_n - n0 >= 50, $"only {_n - n0} variants");
    }

    /// <summary>Byte offsets of one tensor info's fields, found by the name's bytes (names in the fixture are unique).</summary>
    private static (int NDims, int Ne0, int Type, int Offset) InfoFields(byte[] file, string name, int nDims)
    {
        var nameBytes = Encoding.UTF8.GetBytes(name);
        int at = file.AsSpan().LastIndexOf(nameBytes);
        Assert.True(at > 0);
        int nd = at + nameBytes.Length, ne0 = nd + 4, type = ne0 + 8 * nDims;
        return (nd, ne0, type, type + 4);
    }

    [Fact]
    public void GgufVariantsAreRejected()
    {
        string fixture = RepoPaths.Of("tests", "fixtures", "gguf", "tensors.gguf");
        var good = File.ReadAllBytes(fixture);
        long dataEnd;
        using (var g = GgufFile.Open(fixture)) dataEnd = g.DataOffset + g.Tensors.Max(t => t.Offset + t.ByteSize);
        int n0 = _n;
        void Load(string p)
        {
            using var g = GgufFile.Open(p);
            foreach (var t in g.Tensors) g.ReadF32(t.Name);
        }
        // Every cut before the end of the last tensor's data loses something.
        foreach (int cut in Cuts((int)dataEnd, 40))
            AssertRejected($"truncated at {cut}", Truncate(good, cut), Load);
        AssertRejected("magic", With(good, b => b[0] = (byte)'X'), Load);
        foreach (uint v in new uint[] { 0, 1, 4, 0xFFFFFFFF })
            AssertRejected($"version {v}", With(good, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), v)), Load);
        foreach (ulong v in new[] { 1000UL, 1UL << 40, ulong.MaxValue })
        {
            AssertRejected($"n_tensors {v}", With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), v)), Load);
            AssertRejected($"n_kv {v}", With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), v)), Load);
            AssertRejected($"first key length {v}", With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(24), v)), Load);
        }
        // first value type follows the key "general.architecture" (24 + 8 + 20)
        foreach (uint v in new uint[] { 13, 999, 0xFFFFFFFF, (uint)GgufValueType.Array })
            AssertRejected($"value type {v}", With(good, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(52), v)), Load);
        AssertRejected("string value length huge", With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(56), 1UL << 50)), Load);
        AssertRejected("invalid UTF-8 key", With(good, b => b[32] = 0xFF), Load);
        AssertRejected("bool byte 7", With(good, b => b[good.AsSpan().IndexOf("v.bool"u8) + 6 + 4] = 7), Load);
        int arr = good.AsSpan().IndexOf("v.arr_i32"u8) + 9 + 4; // array element type, then count
        AssertRejected("array element type 77", With(good, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(arr), 77)), Load);
        AssertRejected("array count huge", With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(arr + 4), 1UL << 40)), Load);
        AssertRejected("array count past end", With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(arr + 4), 2000)), Load);
        int nested = good.AsSpan().IndexOf("v.arr_nested"u8) + 12 + 4 + 4 + 8; // first inner array's element type
        AssertRejected("nested array count huge", With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(nested + 4), ulong.MaxValue)), Load);

        var q8 = InfoFields(good, "t.q8_0", 2);
        foreach (uint v in new uint[] { 0, 5, 0xFFFFFFFF })
            AssertRejected($"n_dims {v}", With(good, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(q8.NDims), v)), Load);
        foreach (ulong v in new ulong[] { 0, 33, 1UL << 40, ulong.MaxValue, 64 * 1000 })
            AssertRejected($"ne[0] {v}", With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(q8.Ne0), v)), Load);
        foreach (uint v in new uint[] { 3, 4, 16, 34, 99, 0xFFFFFFFF }) // Q4_1, removed Q4_2, IQ2_XXS, TQ1_0: not read
            AssertRejected($"tensor type {v}", With(good, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(q8.Type), v)), Load);
        foreach (ulong v in new ulong[] { 1, 31, 1UL << 40, ulong.MaxValue, (ulong)good.Length })
            AssertRejected($"tensor offset {v}", With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(q8.Offset), v)), Load);
        // A type code changed to a wider type, or an offset moved onto another tensor: two tensors share bytes (issue 13).
        AssertRejected("tensor type Q8_0 -> F16", With(good, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(q8.Type), 1)), Load);
        var moved = With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(q8.Offset), 0));
        AssertRejected("tensor offset moved onto another", moved, Load);
        string movedPath = Path.Combine(Path.GetTempPath(), $"mt-overlap-{Guid.NewGuid():N}.gguf");
        File.WriteAllBytes(movedPath, moved);
        try
        {
            var e = Assert.Throws<InvalidModelFileException>(() => GgufFile.Open(movedPath).Dispose());
            Assert.Contains("t.q8_0", e.Message);
            Assert.Contains("overlap", e.Message);
        }
        finally { File.Delete(movedPath); }
        AssertRejected("duplicate tensor name", With(good, b => "32"u8.CopyTo(b.AsSpan(InfoFields(good, "t.f16", 2).NDims - 2))), Load); // t.f16 -> t.f32
        Assert.True(_n - n0 >= 50, $"only {_n - n0} variants");
    }

    /// <summary>
    /// Header fields that are each valid alone but disagree with each other: a tensor's type code changed to another
    /// supported type (so its byte size no longer fits the gap to the next tensor), or its offset moved onto the
    /// previous tensor's bytes. Both used to load, reading other tensors' bytes as this one's.
    /// </summary>
    [Fact]
    public void GgufTypesAndOffsetsMustTileTheDataSection()
    {
        string fixture = RepoPaths.Of("tests", "fixtures", "gguf", "tensors.gguf");
        var good = File.ReadAllBytes(fixture);
        List<GgufTensorInfo> tensors;
        int align;
        using (var g = GgufFile.Open(fixture)) (tensors, align) = (g.Tensors.ToList(), g.Alignment);
        long Padded(long bytes) => (bytes + align - 1) / align * align;
        void Load(string p)
        {
            using var g = GgufFile.Open(p);
            foreach (var t in g.Tensors) g.ReadF32(t.Name);
        }
        int n0 = _n;
        foreach (var t in tensors)
        {
            var f = InfoFields(good, t.Name, t.Dims.Length);
            foreach (var other in Enum.GetValues<GgmlType>())
            {
                // A type whose padded size is the same is indistinguishable from one written that way.
                if (other == t.Type || t.Dims[0] % GgmlTypes.Layout(other).BlockSize != 0 || Padded(GgmlTypes.ByteCount(other, t.ElementCount)) == Padded(t.ByteSize)) continue;
                AssertRejected($"{t.Name}: type {t.Type} -> {other}", With(good, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(f.Type), (uint)other)), Load);
            }
        }
        for (int i = 1; i < tensors.Count; i++)
        {
            var f = InfoFields(good, tensors[i].Name, tensors[i].Dims.Length);
            ulong onto = (ulong)tensors[i - 1].Offset;
            AssertRejected($"{tensors[i].Name}: offset moved onto {tensors[i - 1].Name}", With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(f.Offset), onto)), Load);
        }
        Assert.True(_n - n0 >= 8, $"only {_n - n0} variants");
    }

    [Fact]
    public void GgufAlignmentAndLlamaMetadataErrorsAreClear()
    {
        AssertRejected("alignment 3", WrittenBy(w => w.Add("general.alignment", 3u)), p => GgufFile.Open(p).Dispose());
        AssertRejected("alignment 0", WrittenBy(w => w.Add("general.alignment", 0u)), p => GgufFile.Open(p).Dispose());
        AssertRejected("alignment as string", WrittenBy(w => w.Add("general.alignment", "32")), p => GgufFile.Open(p).Dispose());
        AssertRejected("duplicate key", WrittenBy(w => w.Add("k", 1).Add("k", 2)), p => GgufFile.Open(p).Dispose());
        void LoadLlama(string p) { using var g = GgufFile.Open(p); GgufLlama.LoadModel(g); }
        AssertRejected("not llama", WrittenBy(w => w.Add("general.architecture", "gpt2")), LoadLlama);
        AssertRejected("missing keys", WrittenBy(w => w.Add("general.architecture", "llama")), LoadLlama);
        AssertRejected("heads do not divide dim", WrittenBy(w => w.Add("general.architecture", "llama").Add("llama.embedding_length", 64u)
            .Add("llama.attention.head_count", 7u).Add("llama.feed_forward_length", 100u).Add("llama.block_count", 1u).Add("llama.context_length", 8u)
            .AddTensor("token_embd.weight", [64, 4], GgmlType.F32, new float[256])), LoadLlama);
        AssertRejected("wrong type for a key", WrittenBy(w => w.Add("general.architecture", 5u)), LoadLlama);
    }

    private byte[] WrittenBy(Action<GgufWriter> build)
    {
        var w = new GgufWriter();
        build(w);
        string tmp = Path.Combine(_dir, $"w{_n}.gguf");
        w.Write(tmp);
        return File.ReadAllBytes(tmp);
    }
}
