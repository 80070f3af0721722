namespace ManagedTensor.Bench;

/// <summary>
/// Process CPU time, minor page faults, full (gen 2) collections and the collector's pause time per phase of a step (forward, loss, backward,
/// optimizer): where a step spends the time that the per-op profile does not see (host code such as a loss's
/// assigner, the autograd bookkeeping, garbage collections). <see cref="Start"/> at the top of a step, then
/// <see cref="Mark"/> at the end of each phase; totals cover the marks since the last <see cref="Reset"/>.
/// </summary>
public sealed class StepPhases(string[] names)
{
    private readonly double[] _cpuMs = new double[names.Length];
    private readonly long[] _faults = new long[names.Length];
    private readonly int[] _collections = new int[names.Length];
    private readonly double[] _pauseMs = new double[names.Length];
    private double _cpu, _pause;
    private long _fault;
    private int _gc;

    public void Start() => (_cpu, _fault, _gc, _pause) = (OpProfiler.ProcessCpuMs(), OpProfiler.MinorFaults(), GC.CollectionCount(2), PauseMs());

    private static double PauseMs() => GC.GetTotalPauseDuration().TotalMilliseconds;

    public void Mark(int phase)
    {
        var (cpu, fault, gc, pause) = (OpProfiler.ProcessCpuMs(), OpProfiler.MinorFaults(), GC.CollectionCount(2), PauseMs());
        _cpuMs[phase] += cpu - _cpu;
        _faults[phase] += fault - _fault;
        _collections[phase] += gc - _gc;
        _pauseMs[phase] += pause - _pause;
        (_cpu, _fault, _gc, _pause) = (cpu, fault, gc, pause);
    }

    public void Reset()
    {
        Array.Clear(_cpuMs);
        Array.Clear(_faults);
        Array.Clear(_collections);
        Array.Clear(_pauseMs);
    }

    public void Print(TextWriter output, int iterations)
    {
        output.WriteLine($"{"cpu ms",9} {"faults",8} {"gen2 GCs",9} {"GC ms",7}  phase (per step)");
        for (int i = 0; i < names.Length; i++)
            output.WriteLine($"{_cpuMs[i] / iterations,9:F1} {(double)_faults[i] / iterations,8:F0} {(double)_collections[i] / iterations,9:F1} {_pauseMs[i] / iterations,7:F1}  {names[i]}");
    }
}
