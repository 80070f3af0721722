using System.Diagnostics;

namespace ManagedTensor.Bench;

/// <summary>
/// Wraps a backend and adds up wall time and call counts per op, so a benchmark can say where a
/// training step's time goes (`gpt-train --profile`).
/// </summary>
public sealed class OpProfiler(IBackend inner) : IBackend
{
    private readonly Dictionary<Op, (double Ms, long Calls)> _totals = [];

    public Device Device => inner.Device;

    public Storage Allocate(DType dtype, int length, bool zero) => inner.Allocate(dtype, length, zero);

    public void Execute(Op op, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, OpAttrs? attrs)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Execute(op, inputs, outputs, attrs);
        double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        var (total, calls) = _totals.GetValueOrDefault(op);
        _totals[op] = (total + ms, calls + 1);
    }

    public void Reset() => _totals.Clear();

    public void Print(TextWriter output, int iterations)
    {
        output.WriteLine($"{"op",-24} {"ms/iter",9} {"calls/iter",10}");
        foreach (var (op, (ms, calls)) in _totals.OrderByDescending(kv => kv.Value.Ms))
            output.WriteLine($"{op,-24} {ms / iterations,9:F2} {(double)calls / iterations,10:F1}");
        output.WriteLine($"{"total in ops",-24} {_totals.Values.Sum(v => v.Ms) / iterations,9:F2}");
    }
}
