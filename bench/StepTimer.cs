using System.Diagnostics;

namespace ManagedTensor.Bench;

/// <summary>
/// The timing loop the side-by-side runners share (DiffusionRunner, WhisperRunner; the PyTorch scripts time the same
/// way): <c>iters</c> iterations each timed alone, the first <c>warmup</c> discarded; the figure is the median of the
/// rest, with the process CPU time per timed iteration (all threads; on a shared machine the steadier figure: waiting
/// for a core adds wall time, not CPU time) and the peak resident memory. With a profiler, its totals cover the timed
/// iterations only and are printed before the result line.
/// </summary>
public static class StepTimer
{
    public readonly record struct Result(double MsPerIter, double CpuMsPerIter, int Timed);

    public static Result Run(string what, int iters, int warmup, OpProfiler? profiler, Action step)
    {
        if (warmup < 0 || iters <= warmup) throw new ArgumentException($"{what}: --iters {iters} must exceed --warmup {warmup} (>= 0)");
        if (profiler is not null) Backends.Register(profiler);
        var times = new List<double>();
        double cpuStart = 0;
        for (int it = 0; it < iters; it++)
        {
            if (it == warmup) { cpuStart = OpProfiler.ProcessCpuMs(); profiler?.Reset(); }
            var clock = Stopwatch.StartNew();
            step();
            times.Add(clock.Elapsed.TotalMilliseconds);
            Console.Error.WriteLine($"{what} iteration {it + 1}/{iters}: {times[^1]:F0} ms");
        }
        int timed = iters - warmup;
        double cpuMs = (OpProfiler.ProcessCpuMs() - cpuStart) / timed;
        profiler?.Print(Console.Out, timed);
        return new Result(Median(times.Skip(warmup).ToList()), cpuMs, timed);
    }

    public static double Median(List<double> values)
    {
        var s = values.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }

    /// <summary>VmHWM: the most resident memory this process has held, in MB.</summary>
    public static double PeakRssMb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
        return double.NaN;
    }
}
