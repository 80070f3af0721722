using System.CommandLine;
using System.Diagnostics;
using ManagedTensor.Conformance;
using ManagedTensor.Gpu;
using Spectre.Console;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt selftest --device cuda|cuda:N|ilgpu-cpu`: lists the CUDA devices, runs the op conformance suite
/// (every op, GPU kernel vs the CPU reference; realistic sizes on CUDA, small ones on ilgpu-cpu) and
/// prints a pass/fail table. `--ptx` also compiles every kernel offline for sm_89 and sm_90.
/// Exit code 0 when every case passes, 1 when one fails, 2 when the device cannot be opened.
/// </summary>
public static class SelftestCommand
{
    public static Command Create(TextWriter output)
    {
        var device = new Option<string>("--device") { Description = "cuda, cuda:N or ilgpu-cpu", DefaultValueFactory = _ => "cuda" };
        var scale = new Option<string?>("--scale") { Description = "small or realistic [default: realistic on CUDA, small on ilgpu-cpu]" };
        scale.AcceptOnlyFromAmong("small", "realistic");
        var filter = new Option<string?>("--filter") { Description = "only cases whose name contains this text" };
        var ptx = new Option<bool>("--ptx") { Description = "also compile every kernel to PTX for sm_89 and sm_90" };
        var ops = new Option<bool>("--ops") { Description = "also list every registered op: its kernel on the device, its fallback, its cases" };
        var cmd = new Command("selftest", "run the op conformance suite on a GPU device against the CPU reference") { device, scale, filter, ptx, ops };
        cmd.SetAction(p => Run(output, p.GetValue(device)!, p.GetValue(scale), p.GetValue(filter), p.GetValue(ptx), p.GetValue(ops)));
        return cmd;
    }

    private static int Run(TextWriter output, string deviceName, string? scaleName, string? filter, bool ptx, bool listOps)
    {
        bool terminal = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        });
        if (!terminal) console.Profile.Width = 200; // a log file: one table row per line
        var device = Device.Parse(deviceName);
        if (device.Kind == DeviceKind.Cpu)
        {
            console.MarkupLine("[red]selftest compares a GPU device with the CPU reference: use --device cuda, cuda:N or ilgpu-cpu[/]");
            return 2;
        }
        var (cuda, problem) = GpuDevices.ListCuda();
        foreach (var d in cuda) console.WriteLine($"CUDA device {d}");
        if (problem is not null) console.WriteLine($"CUDA: {problem}");
        if (ptx && !CompilePtx(console)) return 1;

        GpuBackend backend;
        try
        {
            backend = (GpuBackend)Backends.For(device);
        }
        catch (Exception e)
        {
            console.MarkupLineInterpolated($"[red]{device}: {e.Message}[/]");
            return 2;
        }
        console.WriteLine($"testing {backend.Info}");

        var scale = scaleName?.ToLowerInvariant() switch
        {
            null => device.Kind == DeviceKind.Cuda ? CaseScale.Realistic : CaseScale.Small,
            "small" => CaseScale.Small,
            "realistic" => CaseScale.Realistic,
            _ => throw new ArgumentException($"--scale: expected small or realistic, got '{scaleName}'"),
        };
        var cases = OpConformance.Cases(scale).Where(c => filter is null || c.Name.Contains(filter, StringComparison.OrdinalIgnoreCase)).ToList();
        var table = new Table().AddColumns("case", "ops", "dtype", "shape", "max |err|", "max rel", "device ms", "result");
        int failed = 0;
        var total = Stopwatch.StartNew();
        foreach (var c in cases)
        {
            var r = OpConformance.Run(c, device);
            if (!r.Passed) failed++;
            table.AddRow(
                Markup.Escape(c.Name), Markup.Escape(string.Join(",", c.Ops.Select(OpRegistry.NameOf))), c.DType.ToString(), Markup.Escape(c.Shape),
                r.MaxAbsError.ToString("G3"), r.MaxRelError.ToString("G3"), r.DeviceTime.TotalMilliseconds.ToString("F1"),
                r.Passed ? "[green]pass[/]" : $"[red]FAIL[/] {Markup.Escape(r.Error ?? "")}");
        }
        console.Write(table);
        WriteRegistry(console, backend, OpConformance.Cases(scale), listOps);
        var s = backend.Stats;
        console.WriteLine($"{cases.Count - failed} passed, {failed} failed of {cases.Count} cases ({scale} sizes) in {total.Elapsed.TotalSeconds:F1} s; " +
            $"{backend.CompiledKernels} kernels compiled; device memory peak {Format(s.PeakBytes)}, reserved {Format(s.ReservedBytes)}, {s.DeviceAllocations} driver allocations");
        return failed == 0 ? 0 : 1;
    }

    /// <summary>
    /// The op registry seen from this device: how each op runs here (its kernel, or its composite fallback)
    /// and how many conformance cases check it. A summary line always; the table with --ops.
    /// </summary>
    private static void WriteRegistry(IAnsiConsole console, GpuBackend backend, IReadOnlyList<OpCase> cases, bool table)
    {
        Autograd.EnsureBackwardRules();
        var rows = OpRegistry.All
            .Where(d => Backends.For(Device.Cpu).Kernels.Has(d.Op) || backend.Kernels.Has(d.Op) || d.Fallback is not null)
            .Select(d => (Def: d, Kernel: backend.Kernels.Has(d.Op), Cases: cases.Count(c => c.Ops.Contains(d.Op))))
            .ToList();
        if (table)
        {
            var t = new Table().AddColumns("op", "on this device", "fallback", "backward", "cases", "what it computes");
            foreach (var (d, kernel, n) in rows)
                t.AddRow(Markup.Escape(d.Name), kernel ? "kernel" : d.Fallback is not null ? "[yellow]fallback[/]" : "[red]none[/]",
                    d.Fallback is not null ? "yes" : "", d.Backward is not null ? "yes" : "", n.ToString(), Markup.Escape(d.Summary));
            console.Write(t);
        }
        int kernels = rows.Count(r => r.Kernel), fallbacks = rows.Count(r => !r.Kernel && r.Def.Fallback is not null);
        console.WriteLine($"{rows.Count} ops in the registry run on this device: {kernels} by a kernel, {fallbacks} by their fallback, {rows.Count - kernels - fallbacks} not at all");
    }

    private static bool CompilePtx(IAnsiConsole console)
    {
        var specs = GpuBackend.AllKernelSpecs().DistinctBy(s => s.Method).ToList();
        bool ok = true;
        foreach (var arch in PtxCompiler.CiTargets)
        {
            var sw = Stopwatch.StartNew();
            var results = PtxCompiler.CompileAll(specs.Select(s => s.Method), arch);
            var errors = results.Where(r => r.Error is not null).ToList();
            console.WriteLine($"PTX sm_{arch.Major}{arch.Minor}: {results.Count - errors.Count} of {results.Count} kernels compiled in {sw.Elapsed.TotalSeconds:F1} s");
            foreach (var e in errors) console.WriteLine($"  {e.Error}");
            ok &= errors.Count == 0;
        }
        return ok;
    }

    private static string Format(long bytes) => bytes >= 1 << 20 ? $"{bytes / (double)(1 << 20):F1} MiB" : $"{bytes / 1024.0:F1} KiB";
}
