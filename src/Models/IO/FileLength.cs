namespace ManagedTensor.Models.IO;

/// <summary>
/// The length of a file's contents, through symbolic links. FileInfo.Length on a link reports the link itself (the
/// length of the target's path), and the Hugging Face hub cache keeps every file of a checkpoint as a link from
/// snapshots/REV/NAME to ../../blobs/HASH: a 2 KB header read against a 23-byte "file" was refused as truncated.
/// Opening the file follows the links, so its handle's length is the target's.
/// </summary>
public static class FileLength
{
    public static long Of(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        return RandomAccess.GetLength(handle);
    }
}
