using System.Text;
using ManagedTensor.Models.IO;
using Xunit;

namespace ManagedTensor.Tests.IO;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt-safetensors-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    [Fact]
    public void RoundTripsEveryDType()
    {
        var tensors = new Dictionary<string, Tensor>
        {
            ["a.f32"] = Tensor.FromArray(new[] { 1.5f, -2f, float.MaxValue, float.Epsilon, 0f, -0f }, [2, 3]),
            ["a.f64"] = Tensor.FromArray(new[] { Math.PI, -1e-300, double.NegativeInfinity }, [3]),
            ["a.f16"] = Tensor.FromArray(new[] { (Half)1, (Half)(-0.5f), Half.MaxValue, Half.Epsilon }, [2, 2]),
            ["a.bf16"] = Tensor.FromArray(new[] { (BFloat16)1f, (BFloat16)(-3f), (BFloat16)0.15625f }, [3, 1]),
            ["a.i32"] = Tensor.FromArray(new[] { int.MinValue, -1, 0, int.MaxValue }, [4]),
            ["a.i64"] = Tensor.FromArray(new[] { long.MinValue, 9007199254740993L }, [1, 2]),
            ["a.i8"] = Tensor.FromArray(new sbyte[] { -128, 0, 127 }, [3]),
            ["a.u8"] = Tensor.FromArray(new byte[] { 0, 128, 255 }, [3]),
            ["empty"] = Tensor.Zeros([0, 5]),
            ["scalar"] = Tensor.FromArray(new[] { 7.0f }, []),
        };
        var meta = new Dictionary<string, string> { ["step"] = "12", ["note"] = "ünïcode ok" };
        string path = PathOf("all.safetensors");
        SafeTensors.Save(path, tensors, meta);

        using var file = SafeTensors.Open(path);
        Assert.Equal(meta, file.Metadata);
        Assert.Equal(tensors.Keys.Order(), file.Tensors.Select(t => t.Name).Order());
        foreach (var (name, expected) in tensors)
        {
            var actual = file.Load(name);
            Assert.Equal(expected.DType, actual.DType);
            Assert.Equal(expected.Shape, actual.Shape);
            AssertSameBits(expected, actual);
        }
        Assert.False(File.Exists(path + ".tmp"));
    }

    [Fact]
    public void DataSectionIsEightByteAligned()
    {
        string path = PathOf("aligned.safetensors");
        SafeTensors.Save(path, [new("x", Tensor.FromArray(new[] { 1.0 }))]);
        long headerLength = BitConverter.ToInt64(File.ReadAllBytes(path), 0);
        Assert.Equal(0, (8 + headerLength) % 8);
    }

    [Fact]
    public void SaveOverwritesAtomically()
    {
        string path = PathOf("w.safetensors");
        SafeTensors.Save(path, [new("x", Tensor.FromArray(new[] { 1f, 2f }))]);
        SafeTensors.Save(path, [new("y", Tensor.FromArray(new[] { 3, 4, 5 }))]);
        var loaded = SafeTensors.Load(path);
        Assert.Equal(["y"], loaded.Keys);
        Assert.Equal([3, 4, 5], loaded["y"].ToArray<int>());
        Assert.Equal(["w.safetensors"], Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void ReadsFixtureFromIndependentWriter()
    {
        // Written by tests/fixtures/safetensors/make_fixture.py with Python's struct and json only.
        using var file = SafeTensors.Open(Fixtures.Path("safetensors/tiny.safetensors"));
        Assert.Equal("make_fixture.py", file.Metadata["writer"]);
        Assert.Equal(10, file.Tensors.Count);

        Assert.Equal([2, 3], file.Info("weight.f32").Shape);
        Assert.Equal([0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 65504.0f], file.Load("weight.f32").ToArray<float>());
        Assert.Equal([3.141592653589793, -2.5e-300, 1e300], file.Load("weight.f64").ToArray<double>());
        Assert.Equal([(Half)1.0f, (Half)(-2.0f), (Half)0.333251953125f, (Half)65504.0f], file.Load("weight.f16").ToArray<Half>());
        Assert.Equal([1.0f, -3.0f, 0.15625f], file.Load("weight.bf16").ToArray<BFloat16>().Select(b => (float)b));
        Assert.Equal([0, -1, int.MaxValue, int.MinValue], file.Load("index.i32").ToArray<int>());
        var i64 = file.Load("index.i64");
        Assert.Equal([2, 1], i64.Shape);
        Assert.Equal([9007199254740993L, -5L], i64.ToArray<long>());
        Assert.Equal([(sbyte)-128, (sbyte)0, (sbyte)127], file.Load("small.i8").ToArray<sbyte>());
        Assert.Equal([0, 1, 128, 200, 255], file.Load("small.u8").ToArray<byte>());
        Assert.Equal([0, 4], file.Load("empty.f32").Shape);
        var scalar = file.Load("scalar.f32");
        Assert.Empty(scalar.Shape);
        Assert.Equal([42.0f], scalar.ToArray<float>());
    }

    // ---- malformed files: each error names the file and what is wrong ----

    [Fact]
    public void TruncatedLengthField()
    {
        string path = Write("short.safetensors", [1, 2, 3]);
        AssertError(path, "truncated");
    }

    [Fact]
    public void HeaderLongerThanFile()
    {
        string path = Write("long.safetensors", Bytes(1000, "{}"));
        AssertError(path, "claims 1000 bytes");
    }

    [Fact]
    public void AbsurdHeaderLength()
    {
        var b = new byte[16];
        BitConverter.TryWriteBytes(b.AsSpan(0, 8), ulong.MaxValue / 2);
        AssertError(Write("huge.safetensors", b), "bad header length");
    }

    [Fact]
    public void HeaderNotJson()
    {
        AssertError(Write("nojson.safetensors", Bytes(null, "{not json")), "not valid UTF-8 JSON");
    }

    [Fact]
    public void UnknownDType()
    {
        string path = Write("dtype.safetensors", Bytes(null, """{"w":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}""", 8));
        AssertError(path, "tensor 'w'", "unknown dtype \"C64\"");
    }

    [Fact]
    public void ShapeDoesNotMatchSize()
    {
        string path = Write("size.safetensors", Bytes(null, """{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}""", 20));
        AssertError(path, "tensor 'w'", "needs 24 bytes", "give 20");
    }

    [Fact]
    public void OffsetsPastEndOfData()
    {
        string path = Write("past.safetensors", Bytes(null, """{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8));
        AssertError(path, "tensor 'w'", "run past the data section");
    }

    [Fact]
    public void OverlappingTensors()
    {
        string header = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""";
        AssertError(Write("overlap.safetensors", Bytes(null, header, 12)), "'a'", "'b'", "overlap");
    }

    [Fact]
    public void HoleInDataSection()
    {
        string header = """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""";
        AssertError(Write("hole.safetensors", Bytes(null, header, 12)), "belong to no tensor", "'b'");
    }

    [Fact]
    public void NegativeShapeEntry()
    {
        string path = Write("neg.safetensors", Bytes(null, """{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"""));
        AssertError(path, "tensor 'w'", "shape entry 0");
    }

    [Fact]
    public void MissingTensorNameIsReported()
    {
        string path = PathOf("one.safetensors");
        SafeTensors.Save(path, [new("x", Tensor.FromArray(new[] { 1f }))]);
        using var file = SafeTensors.Open(path);
        var e = Assert.Throws<KeyNotFoundException>(() => file.Load("y"));
        Assert.Contains("'y'", e.Message);
        Assert.Contains(path, e.Message);
    }

    /// <summary>A file: 8-byte length (the JSON's, or <paramref name="claimedLength"/>), the JSON, then <paramref name="dataBytes"/> zero bytes.</summary>
    private static byte[] Bytes(long? claimedLength, string json, int dataBytes = 0)
    {
        byte[] h = Encoding.UTF8.GetBytes(json);
        var b = new byte[8 + h.Length + dataBytes];
        BitConverter.TryWriteBytes(b.AsSpan(0, 8), claimedLength ?? h.Length);
        h.CopyTo(b, 8);
        return b;
    }

    private string Write(string name, byte[] bytes)
    {
        string path = PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static void AssertError(string path, params string[] fragments)
    {
        var e = Assert.Throws<InvalidDataException>(() => SafeTensors.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    private static void AssertSameBits(Tensor expected, Tensor actual)
    {
        switch (expected.DType)
        {
            case DType.F32: Assert.Equal(expected.ToArray<float>().Select(BitConverter.SingleToInt32Bits), actual.ToArray<float>().Select(BitConverter.SingleToInt32Bits)); break;
            case DType.F64: Assert.Equal(expected.ToArray<double>().Select(BitConverter.DoubleToInt64Bits), actual.ToArray<double>().Select(BitConverter.DoubleToInt64Bits)); break;
            case DType.F16: Assert.Equal(expected.ToArray<Half>().Select(BitConverter.HalfToInt16Bits), actual.ToArray<Half>().Select(BitConverter.HalfToInt16Bits)); break;
            case DType.BF16: Assert.Equal(expected.ToArray<BFloat16>().Select(b => (float)b), actual.ToArray<BFloat16>().Select(b => (float)b)); break;
            case DType.I32: Assert.Equal(expected.ToArray<int>(), actual.ToArray<int>()); break;
            case DType.I64: Assert.Equal(expected.ToArray<long>(), actual.ToArray<long>()); break;
            case DType.I8: Assert.Equal(expected.ToArray<sbyte>(), actual.ToArray<sbyte>()); break;
            case DType.U8: Assert.Equal(expected.ToArray<byte>(), actual.ToArray<byte>()); break;
        }
    }
}
