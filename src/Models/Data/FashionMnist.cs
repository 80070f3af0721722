namespace ManagedTensor.Models.Data;

/// <summary>
/// Fashion-MNIST (Zalando): 28x28 grayscale images of 10 kinds of clothing, 60,000 to train and 10,000 to test,
/// in four IDX files (optionally gzipped) named as the original: train-images-idx3-ubyte[.gz], ... The split is
/// read from a folder: --data, else data/fashion-mnist, else the shared copy beside the repository.
/// </summary>
public sealed class FashionMnist
{
    public const int Side = 28;
    public const int Classes = 10;
    public static readonly string[] ClassNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>Where the data is looked for when --data is not given (the first that exists).</summary>
    public static readonly string[] DefaultFolders = ["data/fashion-mnist", "../shared/data/fashion-mnist", "/work/shared/data/fashion-mnist"];

    private FashionMnist(string source, byte[] images, byte[] labels, int count)
    {
        Source = source;
        Images = images;
        Labels = labels;
        Count = count;
    }

    public string Source { get; }
    public int Count { get; }
    public byte[] Images { get; }   // (Count, 28, 28), 0 = black
    public byte[] Labels { get; }   // (Count), 0..9

    /// <summary>The data folder: <paramref name="dir"/> when given (it must exist), else the first default that exists.</summary>
    public static string FindFolder(string? dir)
    {
        if (dir is not null)
        {
            if (!Directory.Exists(dir)) throw new UserErrorException($"--data {dir}: no such folder (it should hold Fashion-MNIST's train-images-idx3-ubyte.gz and the three files beside it)");
            return Path.GetFullPath(dir);
        }
        foreach (string d in DefaultFolders)
        {
            try { return Path.GetFullPath(DataFiles.Find(d)); }
            catch (FileNotFoundException) { }
        }
        throw new UserErrorException($"Fashion-MNIST not found in {string.Join(", ", DefaultFolders)}: give the folder with --data");
    }

    /// <summary>The "train" (60,000) or "t10k" (10,000) split from <paramref name="dir"/>, at most <paramref name="limit"/> images (0: all).</summary>
    public static FashionMnist Load(string dir, string split, int limit = 0)
    {
        var images = IdxFile.Read(FileOf(dir, $"{split}-images-idx3-ubyte"), IdxFile.ImagesMagic);
        var labels = IdxFile.Read(FileOf(dir, $"{split}-labels-idx1-ubyte"), IdxFile.LabelsMagic);
        if (images.Dims.Length != 3 || images.Dims[1] != Side || images.Dims[2] != Side)
            throw new InvalidDataException($"{images.Path}: images are [{string.Join(", ", images.Dims)}], expected [N, {Side}, {Side}]");
        if (labels.Dims.Length != 1 || labels.Dims[0] != images.Dims[0])
            throw new InvalidDataException($"{labels.Path}: {string.Join(" x ", labels.Dims)} labels for {images.Dims[0]} images in {images.Path}");
        foreach (byte l in labels.Data)
            if (l >= Classes) throw new InvalidDataException($"{labels.Path}: label {l} is not a class id (0..{Classes - 1})");
        int n = limit > 0 ? Math.Min(limit, images.Dims[0]) : images.Dims[0];
        return new FashionMnist(images.Path, images.Data[..(n * Side * Side)], labels.Data[..n], n);
    }

    /// <summary>The images whose label is in <paramref name="classes"/>, in their order (a held-out class's test images).</summary>
    public FashionMnist OfClasses(IReadOnlyCollection<int> classes)
    {
        var keep = Enumerable.Range(0, Count).Where(i => classes.Contains(Labels[i])).ToArray();
        if (keep.Length == 0) throw new UserErrorException($"{Source}: no image of class {string.Join(", ", classes)}");
        var images = keep.SelectMany(i => Images.AsSpan(i * Side * Side, Side * Side).ToArray()).ToArray();
        return new FashionMnist(Source, images, keep.Select(i => Labels[i]).ToArray(), keep.Length);
    }

    private static string FileOf(string dir, string name)
    {
        foreach (string f in new[] { name + ".gz", name })
            if (File.Exists(Path.Combine(dir, f))) return Path.Combine(dir, f);
        throw new FileNotFoundException($"{dir}: no {name}.gz (or {name}) in this folder", Path.Combine(dir, name + ".gz"));
    }

    /// <summary>
    /// Images <paramref name="idx"/> as a float32 batch (B, 1, S, S), pixels mapped to [lo, hi] (the classifier uses
    /// [0, 1], diffusion [-1, 1]), zero-padded by <paramref name="pad"/> on each side (28 -> 32 for the denoisers);
    /// the padding takes the value of black.
    /// </summary>
    public Tensor Batch(int[] idx, Device device, double lo = 0, double hi = 1, int pad = 0)
    {
        int s = Side + 2 * pad;
        var x = new float[idx.Length * s * s];
        Array.Fill(x, (float)lo);
        double scale = (hi - lo) / 255.0;
        for (int b = 0; b < idx.Length; b++)
            for (int r = 0; r < Side; r++)
                for (int c = 0; c < Side; c++)
                    x[(b * s + r + pad) * s + c + pad] = (float)(lo + Images[(idx[b] * Side + r) * Side + c] * scale);
        return Tensor.FromArray(x, [idx.Length, 1, s, s], device);
    }

    /// <summary>The labels of <paramref name="idx"/> as int64 (B).</summary>
    public Tensor LabelBatch(int[] idx, Device device) => Tensor.FromArray(idx.Select(i => (long)Labels[i]).ToArray(), [idx.Length], device);
}
