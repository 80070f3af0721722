namespace ManagedTensor.Models.Data;

/// <summary>
/// Locates the repository's data files so that defaults such as "data/tinyshakespeare.txt" work
/// whether the program runs from the repository root, from a sub-folder, or as a published binary
/// (the build copies data/ next to the executable).
/// </summary>
public static class DataFiles
{
    /// <summary>
    /// <paramref name="path"/> itself when it exists (absolute or relative to the current directory);
    /// else the first match relative to the executable's folder, or to any folder above the current
    /// directory or above the executable's folder. Directories (Hugging Face checkpoints) are found the same way.
    /// </summary>
    public static string Find(string path)
    {
        if (File.Exists(path) || Directory.Exists(path)) return Path.GetFullPath(path);
        if (!Path.IsPathRooted(path))
        {
            foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
            {
                for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                {
                    string candidate = Path.Combine(dir.FullName, path);
                    if (File.Exists(candidate) || Directory.Exists(candidate)) return candidate;
                }
            }
        }
        throw new FileNotFoundException(
            $"{path} not found in the current directory ({Directory.GetCurrentDirectory()}), next to the executable ({AppContext.BaseDirectory}) or in any folder above them", path);
    }
}
