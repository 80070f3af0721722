using System.Diagnostics;
using System.Runtime.InteropServices;

namespace ManagedTensor.Bench;

/// <summary>
/// Wraps a backend and adds up wall time, process CPU time and call counts per op, so a benchmark can say
/// where a training step's time goes (`gpt-train --profile`). The CPU time (all threads of the process,
/// CLOCK_PROCESS_CPUTIME_ID) is the steadier figure on a machine shared with other work: a kernel waiting
/// for a core adds wall time but no CPU time. Minor page faults per op are counted too (getrusage): an op whose
/// output array is fresh memory takes one per 4 KiB page it first touches, microseconds each on a virtual machine.
/// </summary>
public sealed partial class OpProfiler(IBackend inner) : IBackend
{
    private readonly Dictionary<string, (double Ms, double CpuMs, long Calls, long Faults)> _totals = [];

    /// <summary>Key time by op and operand shapes (and strides of the first input), not by op alone.</summary>
    public bool ByShape { get; init; }

    public Device Device => inner.Device;

    public Storage Allocate(DType dtype, int length, bool zero) => inner.Allocate(dtype, length, zero);

    public KernelTable Kernels => inner.Kernels;

    public void Execute(Op op, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, OpAttrs? attrs)
    {
        long faults0 = MinorFaults();
        double cpu0 = ProcessCpuMs();
        long start = Stopwatch.GetTimestamp();
        inner.Execute(op, inputs, outputs, attrs);
        double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        double cpuMs = ProcessCpuMs() - cpu0;
        long faults = MinorFaults() - faults0;
        string key = OpRegistry.NameOf(op);
        if (ByShape)
        {
            var parts = new List<string>();
            foreach (var t in inputs) parts.Add(Tensor.ShapeString(t.Shape) + (t.IsContiguous ? "" : "s" + Tensor.ShapeString(t.Strides)));
            key += " " + string.Join(" ", parts) + " -> " + (outputs.Length > 0 ? Tensor.ShapeString(outputs[0].Shape) : "");
        }
        var (total, cpuTotal, calls, faultTotal) = _totals.GetValueOrDefault(key);
        _totals[key] = (total + ms, cpuTotal + cpuMs, calls + 1, faultTotal + faults);
    }

    public void Reset() => _totals.Clear();

    public void Print(TextWriter output, int iterations)
    {
        output.WriteLine($"{"ms/iter",9} {"cpu ms",9} {"calls/iter",10} {"faults/iter",11}  op");
        foreach (var (op, (ms, cpuMs, calls, faults)) in _totals.OrderByDescending(kv => kv.Value.CpuMs).Take(ByShape ? (int.TryParse(Environment.GetEnvironmentVariable("MT_PROFILE_ROWS"), out int rows) ? rows : 40) : 100))
            output.WriteLine($"{ms / iterations,9:F2} {cpuMs / iterations,9:F2} {(double)calls / iterations,10:F1} {(double)faults / iterations,11:F0}  {op}");
        output.WriteLine($"{_totals.Values.Sum(v => v.Ms) / iterations,9:F2} {_totals.Values.Sum(v => v.CpuMs) / iterations,9:F2} {"",10} {(double)_totals.Values.Sum(v => v.Faults) / iterations,11:F0}  total in ops");
        if (!ByShape) return;
        // The same time summed per op over all shapes: which kind of op to work on first.
        output.WriteLine($"{"ms/iter",9} {"cpu ms",9} {"calls/iter",10} {"faults/iter",11}  op (all shapes)");
        var byOp = _totals.GroupBy(kv => kv.Key.Split(' ')[0])
            .Select(grp => (Op: grp.Key, Ms: grp.Sum(kv => kv.Value.Ms), CpuMs: grp.Sum(kv => kv.Value.CpuMs), Calls: grp.Sum(kv => kv.Value.Calls), Faults: grp.Sum(kv => kv.Value.Faults)));
        foreach (var (op, ms, cpuMs, calls, faults) in byOp.OrderByDescending(r => r.CpuMs).Take(25))
            output.WriteLine($"{ms / iterations,9:F2} {cpuMs / iterations,9:F2} {(double)calls / iterations,10:F1} {(double)faults / iterations,11:F0}  {op}");
    }

    /// <summary>CPU time used so far by every thread of this process, in ms.</summary>
    public static double ProcessCpuMs()
    {
        const int ClockProcessCpuTimeId = 2;
        return ClockGetTime(ClockProcessCpuTimeId, out var ts) == 0 ? ts.Seconds * 1e3 + ts.Nanoseconds * 1e-6 : double.NaN;
    }

    /// <summary>Minor page faults of this process so far (getrusage's ru_minflt).</summary>
    public static long MinorFaults()
    {
        const int RusageSelf = 0;
        return GetRusage(RusageSelf, out var usage) == 0 ? usage.MinorFaults : 0;
    }

    /// <summary>struct rusage on 64-bit Linux: two timevals, then 14 longs of which ru_minflt is the fifth.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Rusage
    {
        public long UserSeconds, UserMicros, SystemSeconds, SystemMicros;
        public long MaxRss, SharedRss, UnsharedData, UnsharedStack, MinorFaults, MajorFaults, Swaps, BlockIn, BlockOut, MessagesSent, MessagesReceived, Signals, VoluntarySwitches, InvoluntarySwitches;
    }

    [LibraryImport("libc", EntryPoint = "getrusage")]
    private static partial int GetRusage(int who, out Rusage usage);

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec time);
}
