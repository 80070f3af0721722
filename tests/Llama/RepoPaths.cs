namespace ManagedTensor.Tests.Llama;

/// <summary>Paths of checked-in data, found by walking up from the test binary to the repository root.</summary>
public static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "ManagedTensor.sln"))) return d.FullName;
        throw new DirectoryNotFoundException($"no ManagedTensor.sln above {AppContext.BaseDirectory}");
    }

    public static string Of(params string[] parts) => Path.Combine([Root, .. parts]);

    public static string Stories260K => Of("data", "stories260K", "stories260K.bin");
    public static string Tok512 => Of("data", "stories260K", "tok512.bin");
}
