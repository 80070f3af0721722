using System.IO.Compression;
using System.Text;
using System.Text.RegularExpressions;

namespace ManagedTensor.Models.IO;

/// <summary>
/// numpy's .npz (np.savez / np.savez_compressed): a zip archive holding one .npy file per array. A .npy file is
/// the magic "\x93NUMPY", a version byte pair, the header length (2 bytes little-endian in version 1, 4 in 2 and 3),
/// and a Python dict literal such as <c>{'descr': '&lt;f4', 'fortran_order': False, 'shape': (80, 201), }</c>, then
/// the raw values in C order. Read here: little-endian float32 and float64 in C order (what Whisper's mel filter bank
/// and the test fixtures hold), as F32 and F64 CPU tensors; anything else is refused naming the array and its dtype.
/// </summary>
public static partial class Npz
{
    /// <summary>Every array of <paramref name="path"/>, by name without ".npy".</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        if (!File.Exists(path)) throw new UserErrorException($"{path}: file not found");
        try
        {
            using var zip = ZipFile.OpenRead(path);
            var arrays = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var entry in zip.Entries)
            {
                if (!entry.FullName.EndsWith(".npy", StringComparison.Ordinal)) continue;
                using var s = entry.Open();
                using var ms = new MemoryStream();
                s.CopyTo(ms);
                string name = entry.FullName[..^4];
                arrays[name] = ReadNpy(ms.ToArray(), $"{path}: array '{name}'");
            }
            return arrays;
        }
        catch (InvalidDataException e) { throw new UserErrorException($"{path}: not a numpy .npz (zip) file: {e.Message}"); }
    }

    /// <summary>One .npy file's bytes as a CPU tensor (F32 or F64); <paramref name="what"/> names it in errors.</summary>
    public static Tensor ReadNpy(byte[] b, string what)
    {
        if (b.Length < 10 || b[0] != 0x93 || Encoding.ASCII.GetString(b, 1, 5) != "NUMPY")
            throw new UserErrorException($"{what}: not a .npy array (no \\x93NUMPY magic)");
        int major = b[6];
        int headerLen = major == 1 ? BitConverter.ToUInt16(b, 8) : BitConverter.ToInt32(b, 8);
        int start = major == 1 ? 10 : 12;
        if (headerLen < 0 || start + headerLen > b.Length) throw new UserErrorException($"{what}: header length {headerLen} runs past the file");
        string header = Encoding.ASCII.GetString(b, start, headerLen);
        string descr = Field(DescrRegex(), header, what, "descr");
        if (Field(FortranRegex(), header, what, "fortran_order") != "False")
            throw new UserErrorException($"{what}: Fortran-ordered arrays are not read");
        int[] shape = Field(ShapeRegex(), header, what, "shape").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(int.Parse).ToArray();
        long count = shape.Aggregate(1L, (a, d) => a * d);
        int width = descr switch { "<f4" => 4, "<f8" => 8, _ => throw new UserErrorException($"{what}: dtype '{descr}' is not read (only little-endian float32 '<f4' and float64 '<f8')") };
        int data = start + headerLen;
        if (b.Length - data != count * width)
            throw new UserErrorException($"{what}: {b.Length - data} bytes of data for shape {Tensor.ShapeString(shape)} of '{descr}' ({count * width} expected)");
        if (width == 8)
            return Tensor.FromArray(Enumerable.Range(0, (int)count).Select(i => BitConverter.ToDouble(b, data + i * 8)).ToArray(), shape);
        return Tensor.FromArray(Enumerable.Range(0, (int)count).Select(i => BitConverter.ToSingle(b, data + i * 4)).ToArray(), shape);
    }

    private static string Field(Regex r, string header, string what, string key)
    {
        var m = r.Match(header);
        return m.Success ? m.Groups[1].Value : throw new UserErrorException($"{what}: the .npy header has no '{key}': {header.Trim()}");
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrRegex();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranRegex();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeRegex();
}
