using System.Buffers.Binary;
using System.IO.Compression;

namespace ManagedTensor.Models.Data;

/// <summary>
/// An IDX file (LeCun's MNIST format, also Fashion-MNIST's), read whole: a 4-byte magic (two zero bytes, a type
/// code, the number of dimensions), each dimension as a big-endian int32, then the values row-major. Only unsigned
/// bytes (type 0x08) are read: MNIST's images (magic 2051 = 0x00000803, dims N, 28, 28) and labels (2049 =
/// 0x00000801, dim N). A gzip file (it starts 1f 8b) is decompressed as it is read. Every header field is
/// checked against the bytes the file holds, and an error names the file and what is wrong.
/// </summary>
public sealed record IdxFile(string Path, int[] Dims, byte[] Data)
{
    public const int ImagesMagic = 0x00000803;
    public const int LabelsMagic = 0x00000801;

    /// <summary>Reads <paramref name="path"/> and checks its magic is <paramref name="expectedMagic"/> (2051 images, 2049 labels).</summary>
    public static IdxFile Read(string path, int expectedMagic)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such IDX file", path);
        byte[] raw = ReadAllMaybeGzip(path);
        if (raw.Length < 4) throw new InvalidDataException($"{path}: {raw.Length} bytes, too short for an IDX header (4-byte magic)");
        int magic = BinaryPrimitives.ReadInt32BigEndian(raw);
        if (magic != expectedMagic)
            throw new InvalidDataException($"{path}: IDX magic is {magic} (0x{magic:X8}), expected {expectedMagic} (0x{expectedMagic:X8}, {(expectedMagic == ImagesMagic ? "unsigned-byte images" : "unsigned-byte labels")})");
        int rank = raw[3];
        int headerBytes = 4 + 4 * rank;
        if (raw.Length < headerBytes) throw new InvalidDataException($"{path}: truncated header: {rank} dimensions need {headerBytes} bytes, the file has {raw.Length}");
        var dims = new int[rank];
        long count = 1;
        for (int i = 0; i < rank; i++)
        {
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(raw.AsSpan(4 + 4 * i));
            if (dims[i] < 0) throw new InvalidDataException($"{path}: dimension {i} is {dims[i]}, a count cannot be negative");
            count *= dims[i];
        }
        long have = raw.Length - headerBytes;
        if (have < count)
            throw new InvalidDataException($"{path}: truncated: dimensions [{string.Join(", ", dims)}] need {count:N0} bytes of data, the file has {have:N0}");
        if (have > count)
            throw new InvalidDataException($"{path}: {have - count:N0} bytes after the [{string.Join(", ", dims)}] values the header announces (a wrong count?)");
        return new IdxFile(path, dims, raw.AsSpan(headerBytes).ToArray());
    }

    private static byte[] ReadAllMaybeGzip(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b) return bytes;
        try
        {
            using var gz = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
            using var ms = new MemoryStream();
            gz.CopyTo(ms);
            return ms.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: a corrupt or truncated gzip stream ({e.Message.TrimEnd('.')})", e);
        }
    }

    /// <summary>Writes an unsigned-byte IDX file (tests make small ones, corrupt or not).</summary>
    public static byte[] Encode(int magic, int[] dims, byte[] data)
    {
        var b = new byte[4 + 4 * dims.Length + data.Length];
        BinaryPrimitives.WriteInt32BigEndian(b, magic & ~0xFF | dims.Length);
        for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(4 + 4 * i), dims[i]);
        data.CopyTo(b, 4 + 4 * dims.Length);
        return b;
    }
}
