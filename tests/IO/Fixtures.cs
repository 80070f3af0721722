namespace ManagedTensor.Tests.IO;

/// <summary>Finds checked-in test files (tests/fixtures/...) and repository data (data/...) by walking up from the test binary.</summary>
public static class Fixtures
{
    /// <summary>The full path of tests/fixtures/<paramref name="relative"/>.</summary>
    public static string Path(string relative) => RepoFile(System.IO.Path.Combine("tests", "fixtures", relative));

    /// <summary>The full path of <paramref name="relative"/> under the repository root.</summary>
    public static string RepoFile(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = System.IO.Path.Combine(dir.FullName, relative);
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException($"{relative} not found above {AppContext.BaseDirectory}");
    }
}
