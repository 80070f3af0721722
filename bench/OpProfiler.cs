using System.Diagnostics;

namespace ManagedTensor.Bench;

/// <summary>
/// Wraps a backend and adds up wall time and call counts per op, so a benchmark can say where a
/// training step's time goes (`gpt-train --profile`).
/// </summary>
public sealed class OpProfiler(IBackend inner) : IBackend
{
    private readonly Dictionary<string, (double Ms, long Calls)> _totals = [];

    /// <summary>Key time by op and operand shapes (and strides of the first input), not by op alone.</summary>
    public bool ByShape { get; init; }

    public Device Device => inner.Device;

    public Storage Allocate(DType dtype, int length, bool zero) => inner.Allocate(dtype, length, zero);

    public KernelTable Kernels => inner.Kernels;

    public void Execute(Op op, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, OpAttrs? attrs)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Execute(op, inputs, outputs, attrs);
        double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        string key = OpRegistry.NameOf(op);
        if (ByShape)
        {
            var parts = new List<string>();
            foreach (var t in inputs) parts.Add(Tensor.ShapeString(t.Shape) + (t.IsContiguous ? "" : "s" + Tensor.ShapeString(t.Strides)));
            key += " " + string.Join(" ", parts) + " -> " + (outputs.Length > 0 ? Tensor.ShapeString(outputs[0].Shape) : "");
        }
        var (total, calls) = _totals.GetValueOrDefault(key);
        _totals[key] = (total + ms, calls + 1);
    }

    public void Reset() => _totals.Clear();

    public void Print(TextWriter output, int iterations)
    {
        output.WriteLine($"{"ms/iter",9} {"calls/iter",10}  op");
        foreach (var (op, (ms, calls)) in _totals.OrderByDescending(kv => kv.Value.Ms).Take(ByShape ? 40 : 100))
            output.WriteLine($"{ms / iterations,9:F2} {(double)calls / iterations,10:F1}  {op}");
        output.WriteLine($"{_totals.Values.Sum(v => v.Ms) / iterations,9:F2} {"",10}  total in ops");
    }
}
