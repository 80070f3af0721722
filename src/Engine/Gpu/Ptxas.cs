using System.Diagnostics;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu;

/// <summary>
/// NVIDIA's PTX assembler, when one is installed: a stronger offline check than PTX generation (it
/// rejects invalid instructions for the target and reports registers, spills and stack with -v).
/// Looked up in $MT_PTXAS, then on PATH, then under /usr/local/cuda/bin. Optional: tests that use it
/// skip when it is absent.
/// </summary>
public static class Ptxas
{
    private static readonly Lazy<string?> Located = new(Locate);

    /// <summary>The ptxas executable, or null when none is found.</summary>
    public static string? Path => Located.Value;

    private static string? Locate()
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("MT_PTXAS") is { Length: > 0 } env) candidates.Add(env);
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(System.IO.Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            candidates.Add(System.IO.Path.Combine(dir, "ptxas"));
        candidates.Add("/usr/local/cuda/bin/ptxas");
        return candidates.FirstOrDefault(File.Exists);
    }

    /// <summary>
    /// Assembles <paramref name="ptx"/> for sm_XX of <paramref name="arch"/> with -v. Returns whether
    /// ptxas succeeded and its combined output (errors, or register and spill counts).
    /// </summary>
    public static (bool Ok, string Log) Assemble(string ptx, CudaArchitecture arch)
    {
        var exe = Path ?? throw new InvalidOperationException("ptxas not found (set MT_PTXAS or put it on PATH)");
        var dir = Directory.CreateTempSubdirectory("mt-ptxas-");
        try
        {
            var input = System.IO.Path.Combine(dir.FullName, "kernel.ptx");
            File.WriteAllText(input, ptx);
            var psi = new ProcessStartInfo(exe)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in new[] { $"-arch=sm_{arch.Major}{arch.Minor}", "-v", "-o", System.IO.Path.Combine(dir.FullName, "kernel.cubin"), input })
                psi.ArgumentList.Add(a);
            using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {exe}");
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode == 0, stdout.Result + stderr);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
