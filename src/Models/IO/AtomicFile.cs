namespace ManagedTensor.Models.IO;

/// <summary>
/// Writes a file so that readers see either the old contents or the new, never a torn mix: the bytes go
/// to "&lt;path&gt;.tmp" in the same directory (same file system, so the rename is atomic), are flushed
/// to disk, and the temporary file is then renamed over the target. A crash mid-write leaves the old
/// file intact, and at worst a stale .tmp that <see cref="RemoveStale"/> (or the next write) removes.
/// </summary>
public static class AtomicFile
{
    public static string TempPath(string path) => Path.GetFullPath(path) + ".tmp";

    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        string tmp = TempPath(full);
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
    }

    public static void WriteAllText(string path, string text) =>
        Write(path, s =>
        {
            using var w = new StreamWriter(s, new System.Text.UTF8Encoding(false), leaveOpen: true);
            w.Write(text);
        });

    /// <summary>Copies <paramref name="source"/> to <paramref name="destination"/> atomically.</summary>
    public static void Copy(string source, string destination) =>
        Write(destination, s =>
        {
            using var src = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            src.CopyTo(s);
        });

    /// <summary>Deletes the temporary file a write to <paramref name="path"/> left behind when it was killed mid-way.</summary>
    public static void RemoveStale(string path)
    {
        string tmp = TempPath(path);
        if (File.Exists(tmp)) File.Delete(tmp);
    }

    /// <summary>
    /// Throws a <see cref="UserErrorException"/> naming <paramref name="path"/> (and the <paramref name="option"/> that
    /// gave it) unless a file can be written there: creates its directory and the temporary file a write would use,
    /// then deletes that again. Run before long work whose result goes to <paramref name="path"/>, so an unwritable
    /// output is found in the first second, not after the work.
    /// </summary>
    public static void EnsureWritable(string path, string? option = null)
    {
        if (Directory.Exists(path)) throw new UserErrorException($"{Named(path, option)}: is a directory, expected a file name");
        Probe(TempPath(path), path, option);
    }

    /// <summary>
    /// Throws a <see cref="UserErrorException"/> unless <paramref name="directory"/> exists or can be created and files
    /// can be written into it (checked with a probe file that is deleted again).
    /// </summary>
    public static void EnsureWritableDirectory(string directory, string? option = null)
    {
        if (File.Exists(directory)) throw new UserErrorException($"{Named(directory, option)}: is a file, expected a directory");
        Probe(Path.Combine(directory, ".mt-write-check.tmp"), directory, option);
    }

    private static void Probe(string file, string shown, string? option)
    {
        try
        {
            string? dir = Path.GetDirectoryName(Path.GetFullPath(file));
            if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
            using (new FileStream(file, FileMode.Create, FileAccess.Write, FileShare.None)) { }
            File.Delete(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new UserErrorException($"{Named(shown, option)}: cannot write there ({Reason(e)})", e);
        }
    }

    private static string Named(string path, string? option) => option is null ? path : $"{option} {path}";

    /// <summary>The OS's reason, short: .NET's messages repeat the path ("Access to the path '/x' is denied.").</summary>
    private static string Reason(Exception e) => e switch
    {
        UnauthorizedAccessException => "permission denied",
        DirectoryNotFoundException => "a directory on the way does not exist",
        _ => e.Message.TrimEnd('.'),
    };
}
