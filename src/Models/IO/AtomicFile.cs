namespace ManagedTensor.Models.IO;

/// <summary>
/// Writes a file so that readers see either the old contents or the new, never a torn mix: the bytes go
/// to "&lt;path&gt;.tmp" in the same directory (same file system, so the rename is atomic), are flushed
/// to disk, and the temporary file is then renamed over the target. A crash mid-write leaves the old
/// file intact (and at worst a stale .tmp that the next write replaces).
/// </summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        string tmp = full + ".tmp";
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
}
