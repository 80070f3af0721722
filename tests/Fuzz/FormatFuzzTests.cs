using Xunit;
using Xunit.Abstractions;

namespace ManagedTensor.Tests.Fuzz;

/// <summary>
/// Every format the project reads, mutated by a seeded fuzzer (<see cref="Mutator"/>): each load must end in success
/// or in an error the user can act on (one line, through <see cref="ManagedTensor.Apps.UserErrors"/>), never in an
/// exception that would reach the user as a stack trace. CI runs 100 mutations per format (about half a
/// minute on 2 cores); scripts/fuzz.sh runs many more (MT_FUZZ_MUTATIONS, MT_FUZZ_SEED) and prints the counts.
/// </summary>
public sealed class FormatFuzzTests(FormatFuzzTests.Files files, ITestOutputHelper log) : IClassFixture<FormatFuzzTests.Files>
{
    /// <summary>The pristine files, made once for all formats (stories260K as GGUF, a training checkpoint).</summary>
    public sealed class Files : IDisposable
    {
        public string Work { get; } = Directory.CreateTempSubdirectory("mt-fuzz-").FullName;
        public List<FuzzTarget> Targets { get; }

        public Files() => Targets = FormatFuzzer.Targets(Work);

        public void Dispose() => Directory.Delete(Work, recursive: true);
    }

    private static int Env(string name, int fallback) => int.TryParse(Environment.GetEnvironmentVariable(name), out int v) ? v : fallback;

    public static TheoryData<int> TargetIndices() => [.. Enumerable.Range(0, 8)];

    [Theory]
    [MemberData(nameof(TargetIndices))]
    public void Mutated_files_load_or_fail_with_a_one_line_error(int index)
    {
        Assert.Equal(TargetIndices().Count, files.Targets.Count);
        var target = files.Targets[index];
        int mutations = Env("MT_FUZZ_MUTATIONS", 100), seed = Env("MT_FUZZ_SEED", 20251204) + index;
        var counts = FormatFuzzer.Run(target, mutations, seed, files.Work);
        log.WriteLine(counts.ToString());
        foreach (string s in counts.UnnamedSamples) log.WriteLine("  not naming the file: " + s);
        if (Environment.GetEnvironmentVariable("MT_FUZZ_REPORT") is { Length: > 0 } report)
            File.AppendAllText(report, counts + "\n" + string.Concat(counts.UnnamedSamples.Select(s => "    not naming the file: " + s + "\n"))
                + string.Concat(counts.Failures.Select(f => "    UNHANDLED " + f + "\n")));
        Assert.True(counts.Failures.Count == 0, $"{counts.Failures.Count} of {counts.Cases} mutations ended in an unhandled exception:\n{string.Join("\n", counts.Failures.Take(10))}");
        Assert.Equal(mutations, counts.Cases);
    }
}
