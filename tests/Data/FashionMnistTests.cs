using System.IO.Compression;
using ManagedTensor.Models.Data;
using Xunit;

namespace ManagedTensor.Tests.Data;

/// <summary>Tiny Fashion-MNIST-shaped IDX files written by hand: each class a bright bar at its own row, so a model can learn them.</summary>
public static class TinyFashion
{
    public static byte[] Image(int label, int variant)
    {
        var px = new byte[28 * 28];
        int row = 2 + label * 2 + variant % 2;
        for (int c = 4 + variant % 3; c < 24; c++) { px[row * 28 + c] = 250; px[(row + 1) * 28 + c] = 200; }
        return px;
    }

    /// <summary>Writes train (n) and t10k (nTest) splits to <paramref name="dir"/>, gzipped like the originals.</summary>
    public static string Write(string dir, int n = 60, int nTest = 20)
    {
        Directory.CreateDirectory(dir);
        foreach (var (split, count) in new[] { ("train", n), ("t10k", nTest) })
        {
            var labels = Enumerable.Range(0, count).Select(i => (byte)(i % 10)).ToArray();
            var images = Enumerable.Range(0, count).SelectMany(i => Image(i % 10, i / 10)).ToArray();
            Gz(Path.Combine(dir, $"{split}-images-idx3-ubyte.gz"), IdxFile.Encode(IdxFile.ImagesMagic, [count, 28, 28], images));
            Gz(Path.Combine(dir, $"{split}-labels-idx1-ubyte.gz"), IdxFile.Encode(IdxFile.LabelsMagic, [count], labels));
        }
        return dir;
    }

    public static void Gz(string path, byte[] data)
    {
        using var f = File.Create(path);
        using var gz = new GZipStream(f, CompressionLevel.Fastest);
        gz.Write(data);
    }

    public static string TempDir(string name)
    {
        string d = Path.Combine(Path.GetTempPath(), $"mt-{name}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(d);
        return d;
    }
}

/// <summary>The IDX reader and the Fashion-MNIST loader: good files (raw and gzipped) and every kind of corrupt one.</summary>
public sealed class FashionMnistTests
{
    private static string WriteRaw(string dir, string name, byte[] bytes)
    {
        string p = Path.Combine(dir, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    [Fact]
    public void Reads_gzipped_and_raw_files_with_their_dimensions_and_values()
    {
        string dir = TinyFashion.Write(TinyFashion.TempDir("idx"), 30, 10);
        var train = FashionMnist.Load(dir, "train");
        Assert.Equal(30, train.Count);
        Assert.Equal(7, train.Labels[17]);
        Assert.Equal(TinyFashion.Image(7, 1), train.Images[(17 * 784)..(18 * 784)]);
        var raw = IdxFile.Read(WriteRaw(dir, "raw", IdxFile.Encode(IdxFile.LabelsMagic, [3], [1, 2, 9])), IdxFile.LabelsMagic);
        Assert.Equal([3], raw.Dims);
        Assert.Equal([1, 2, 9], raw.Data);
        var limited = FashionMnist.Load(dir, "t10k", limit: 4);
        Assert.Equal(4, limited.Count);
        // Batch: [-1, 1] with black padding (28 -> 32): the corner is -1, a bar pixel 250/255 -> 0.96.
        var x = train.Batch([17], Device.Cpu, -1, 1, pad: 2).ToDoubleArray();
        Assert.Equal(-1, x[0], 6);
        int row = 2 + 7 * 2 + 1 + 2, col = 5 + 2;
        Assert.Equal(250 / 127.5 - 1, x[row * 32 + col], 5);
    }

    [Fact]
    public void Corrupt_files_name_the_file_and_the_fault()
    {
        string dir = TinyFashion.TempDir("idx-bad");
        var good = IdxFile.Encode(IdxFile.ImagesMagic, [2, 28, 28], new byte[2 * 784]);
        string Err(byte[] bytes, string name, int magic = IdxFile.ImagesMagic) =>
            Assert.Throws<InvalidDataException>(() => IdxFile.Read(WriteRaw(dir, name, bytes), magic)).Message;

        Assert.Contains("labels", Err(good, "wrongkind", IdxFile.LabelsMagic));                   // images where labels belong
        var badMagic = (byte[])good.Clone();
        badMagic[2] = 0x0D;                                                                        // float data type
        Assert.Contains("magic", Err(badMagic, "magic"));
        string trunc = Err(good[..(good.Length - 5)], "truncated");
        Assert.Contains("truncated", trunc);
        Assert.Contains("truncated", trunc[..trunc.IndexOf(':')]);                                 // the message starts with the path
        Assert.Contains("truncated header", Err(good[..9], "header"));
        Assert.Contains("after", Err([.. good, 1, 2, 3], "extra"));
        Assert.Contains("too short", Err([0, 0], "tiny"));
        var negative = IdxFile.Encode(IdxFile.LabelsMagic, [1], [0]);
        negative[4] = 0xFF;                                                                        // count -> negative
        Assert.Contains("negative", Err(negative, "neg", IdxFile.LabelsMagic));
        var gz = new MemoryStream();
        using (var z = new GZipStream(gz, CompressionLevel.Fastest, leaveOpen: true)) z.Write(good);
        string cut = Err(gz.ToArray()[..40], "cut.gz");                                           // a cut stream: gzip's error or too few bytes
        Assert.True(cut.Contains("gzip") || cut.Contains("truncated"), cut);
    }

    [Fact]
    public void The_loader_checks_counts_sizes_and_label_values_across_files()
    {
        string dir = TinyFashion.Write(TinyFashion.TempDir("idx-pair"), 20, 10);
        TinyFashion.Gz(Path.Combine(dir, "t10k-labels-idx1-ubyte.gz"), IdxFile.Encode(IdxFile.LabelsMagic, [9], new byte[9]));
        Assert.Contains("9 labels for 10 images", Assert.Throws<InvalidDataException>(() => FashionMnist.Load(dir, "t10k")).Message);
        TinyFashion.Gz(Path.Combine(dir, "t10k-labels-idx1-ubyte.gz"), IdxFile.Encode(IdxFile.LabelsMagic, [10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 12]));
        Assert.Contains("label 12", Assert.Throws<InvalidDataException>(() => FashionMnist.Load(dir, "t10k")).Message);
        TinyFashion.Gz(Path.Combine(dir, "t10k-images-idx3-ubyte.gz"), IdxFile.Encode(IdxFile.ImagesMagic, [10, 27, 28], new byte[10 * 27 * 28]));
        Assert.Contains("expected [N, 28, 28]", Assert.Throws<InvalidDataException>(() => FashionMnist.Load(dir, "t10k")).Message);
        File.Delete(Path.Combine(dir, "train-images-idx3-ubyte.gz"));
        Assert.Contains("train-images-idx3-ubyte.gz", Assert.Throws<FileNotFoundException>(() => FashionMnist.Load(dir, "train")).Message);
        Assert.Contains("--data", Assert.Throws<UserErrorException>(() => FashionMnist.FindFolder(Path.Combine(dir, "nope"))).Message);
    }
}
