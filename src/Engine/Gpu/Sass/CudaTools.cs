using System.Diagnostics;
using System.Text.RegularExpressions;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu.Sass;

/// <summary>
/// NVIDIA's PTX assembler and cubin disassembler, when present: ptxas turns the PTX ILGPU emits into
/// machine code (SASS) and reports registers, shared memory, stack and spills (-v); cuobjdump -sass prints
/// that machine code. Neither needs a GPU. Looked up in $MT_PTXAS (cuobjdump beside it), the directory
/// $MT_CUDA_TOOLS, PATH, /usr/local/cuda/bin, and the cache that scripts/cuda_tools.sh fills
/// (~/.cache/managedtensor/cuda-tools/&lt;version&gt;/). Optional: tests that need them skip without them.
/// </summary>
public static class CudaTools
{
    private static readonly Lazy<string?> PtxasLocated = new(() => Locate("ptxas"));
    private static readonly Lazy<string?> CuobjdumpLocated = new(() => Locate("cuobjdump"));
    private static readonly Lazy<Version?> PtxasVersionRead = new(ReadPtxasVersion);

    /// <summary>The ptxas executable, or null.</summary>
    public static string? Ptxas => PtxasLocated.Value;

    /// <summary>The cuobjdump executable, or null.</summary>
    public static string? Cuobjdump => CuobjdumpLocated.Value;

    /// <summary>ptxas's release (12.4, 11.8, ...), or null without ptxas.</summary>
    public static Version? PtxasVersion => PtxasVersionRead.Value;

    /// <summary>Whether ptxas can assemble sm_90a code (wgmma, TMA, setmaxnreg): CUDA 12.0 and later.</summary>
    public static bool CanAssembleSm90a => PtxasVersion is { Major: >= 12 };

    /// <summary>The directory scripts/cuda_tools.sh caches its tools under (one subdirectory per version).</summary>
    public static string CacheDirectory =>
        Environment.GetEnvironmentVariable("MT_CUDA_TOOLS_CACHE") is { Length: > 0 } dir ? dir
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "managedtensor", "cuda-tools");

    private static string? Locate(string tool)
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("MT_PTXAS") is { Length: > 0 } ptxas)
            candidates.Add(tool == "ptxas" ? ptxas : Path.Combine(Path.GetDirectoryName(ptxas) ?? ".", tool));
        if (Environment.GetEnvironmentVariable("MT_CUDA_TOOLS") is { Length: > 0 } tools) candidates.Add(Path.Combine(tools, tool));
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            candidates.Add(Path.Combine(dir, tool));
        candidates.Add(Path.Combine("/usr/local/cuda/bin", tool));
        if (Directory.Exists(CacheDirectory))
            candidates.AddRange(Directory.GetDirectories(CacheDirectory).OrderByDescending(d => Version.TryParse(Path.GetFileName(d), out var v) ? v : new Version())
                .Select(d => Path.Combine(d, tool)));
        return candidates.FirstOrDefault(File.Exists);
    }

    private static Version? ReadPtxasVersion()
    {
        if (Ptxas is null) return null;
        var (code, output) = Run(Ptxas, ["--version"]);
        var m = Regex.Match(output, @"release (\d+)\.(\d+)");
        return code == 0 && m.Success ? new Version(int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value)) : null;
    }

    /// <summary>"sm_89", "sm_90", or "sm_90a" with <paramref name="archSpecific"/> (Hopper's wgmma/TMA need it).</summary>
    public static string Target(CudaArchitecture arch, bool archSpecific = false) => $"sm_{arch.Major}{arch.Minor}{(archSpecific ? "a" : "")}";

    /// <summary>
    /// Assembles <paramref name="ptx"/> for <paramref name="arch"/> with -v. Returns whether ptxas
    /// succeeded and its combined output (errors, or register and spill counts).
    /// </summary>
    public static (bool Ok, string Log) Assemble(string ptx, CudaArchitecture arch, bool archSpecific = false)
    {
        var r = AssembleToCubin(ptx, arch, archSpecific);
        return (r.Cubin is not null, r.Log);
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, string), Lazy<(byte[]?, string)>> Assembled = new();

    /// <summary><see cref="AssembleToCubin"/> memoized for the process (keyed by the PTX text and target).</summary>
    public static (byte[]? Cubin, string Log) AssembleCached(string ptx, CudaArchitecture arch, bool archSpecific = false) =>
        Assembled.GetOrAdd((ptx, Target(arch, archSpecific)), _ => new Lazy<(byte[]?, string)>(() => AssembleToCubin(ptx, arch, archSpecific))).Value;

    /// <summary>As <see cref="Assemble"/>, keeping the cubin (null when ptxas failed).</summary>
    public static (byte[]? Cubin, string Log) AssembleToCubin(string ptx, CudaArchitecture arch, bool archSpecific = false)
    {
        var exe = Ptxas ?? throw new InvalidOperationException("ptxas not found (run scripts/cuda_tools.sh, or set MT_PTXAS)");
        var dir = Directory.CreateTempSubdirectory("mt-ptxas-");
        try
        {
            var input = Path.Combine(dir.FullName, "kernel.ptx");
            var cubin = Path.Combine(dir.FullName, "kernel.cubin");
            File.WriteAllText(input, ptx);
            var (code, log) = Run(exe, [$"-arch={Target(arch, archSpecific)}", "-v", "-o", cubin, input]);
            return (code == 0 ? File.ReadAllBytes(cubin) : null, log);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>The SASS listing of a cubin (cuobjdump -sass).</summary>
    public static string Disassemble(byte[] cubin)
    {
        var exe = Cuobjdump ?? throw new InvalidOperationException("cuobjdump not found (run scripts/cuda_tools.sh, or put it beside $MT_PTXAS)");
        var dir = Directory.CreateTempSubdirectory("mt-cuobjdump-");
        try
        {
            var path = Path.Combine(dir.FullName, "kernel.cubin");
            File.WriteAllBytes(path, cubin);
            // cuobjdump -sass runs nvdisasm, which scripts/cuda_tools.sh keeps beside it.
            var (code, output) = Run(exe, ["-sass", path], ("NVDISASM_PATH", Path.GetDirectoryName(exe) ?? "."));
            if (code != 0) throw new InvalidOperationException($"cuobjdump failed: {output}");
            return output;
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static (int Code, string Output) Run(string exe, string[] args, (string Name, string Value)? environment = null)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (environment is { } e) psi.Environment[e.Name] = e.Value;
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {exe}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr);
    }
}
