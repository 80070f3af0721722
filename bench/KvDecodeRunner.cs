using System.Diagnostics;
using ManagedTensor.Models;

namespace ManagedTensor.Bench;

/// <summary>
/// Decode time per token against a KV cache of a given length (`dotnet run -c Release --project bench --
/// kv-decode [contexts...]`, default 64 512 2048): a GPT of 6 layers, 6 heads, 384 wide (nanoGPT's
/// shakespeare_char shape with a 2112-position block, random weights) on the CPU backend. For each
/// context S the cache is filled with S tokens once; then one token is decoded at position S and the
/// cache truncated back to S, again and again, so every timed step attends to exactly S cached keys.
/// Prints "S ms/token" wall-clock and CPU time of all threads (each the best of 5 rounds of about 0.3 s) and the load average, since wall-clock figures
/// on a shared machine mean little without it. What it shows: whether a step's cost grows with S by the
/// attention alone (reading S keys and values) or also by a copy of the whole cache per layer.
/// </summary>
public static class KvDecodeRunner
{
    public static void Run(string[] args)
    {
        var contexts = args.Length > 0 ? args.Select(int.Parse).ToArray() : [64, 512, 2048];
        var config = new GptConfig(BlockSize: contexts.Max() + 64, VocabSize: 65, NLayer: 6, NHead: 6, NEmbd: 384, Dropout: 0, Bias: false);
        var model = new GPT(config, new Generator(1));
        model.Eval();
        Console.WriteLine($"GPT {config.NLayer} layers, {config.NHead} heads, {config.NEmbd} wide, CPU, {Environment.ProcessorCount} cores; load average {LoadAverage()}");
        using var noGrad = GradMode.NoGrad();
        foreach (int s in contexts)
        {
            using var cache = model.NewCache(1);
            var prompt = Enumerable.Range(0, s).Select(i => (long)(i * 7 % config.VocabSize)).ToArray();
            model.Forward(Tensor.FromArray(prompt, [1, s]), cache: cache);
            var next = Tensor.FromArray(new long[] { 3 }, [1, 1]);
            void Step()
            {
                model.Forward(next, cache: cache);
                cache.Truncate(s);
            }
            var (wall, cpu) = Time(Step);
            Console.WriteLine($"{s} {wall * 1e3:F3} ms/token wall, {cpu * 1e3:F3} ms/token CPU");
        }
        Console.WriteLine($"load average after: {LoadAverage()}");
    }

    /// <summary>Best wall-clock and best process CPU time (all threads) per call, over 5 rounds.</summary>
    private static (double Wall, double Cpu) Time(Action body)
    {
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed.TotalSeconds < 1) body(); // tiered compilation settles
        double bestWall = double.MaxValue, bestCpu = double.MaxValue;
        var process = Process.GetCurrentProcess();
        for (int rep = 0; rep < 5; rep++)
        {
            int n = 0;
            process.Refresh();
            var cpu0 = process.TotalProcessorTime;
            var sw = Stopwatch.StartNew();
            do { body(); n++; } while (sw.Elapsed.TotalSeconds < 0.3);
            double wall = sw.Elapsed.TotalSeconds;
            process.Refresh();
            bestWall = Math.Min(bestWall, wall / n);
            bestCpu = Math.Min(bestCpu, (process.TotalProcessorTime - cpu0).TotalSeconds / n);
        }
        return (bestWall, bestCpu);
    }

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";
}
