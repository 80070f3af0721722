using System.Diagnostics;
using ManagedTensor.Models;
using ManagedTensor.Models.Data;
using ManagedTensor.Optim;

namespace ManagedTensor.Bench;

/// <summary>
/// `gpt-train [--iters N] [--shape small|big]`: ms/iter and tokens/s of nanoGPT's CPU recipe (small: 4 layers,
/// 4 heads, 128 wide, block 64, batch 12, character-level tiny Shakespeare; big: 6 layers, 6 heads, 384 wide,
/// block 256, batch 8), one full training step per iteration: batch, forward, backward, gradient clipping,
/// AdamW. Timed exactly as bench/torch_gpt_train.py and bench/torchsharp time theirs (median step time after
/// the first 10 steps), so bench/gpt_train_vs_torch.sh can put them side by side. Also printed: the process's
/// CPU time per step (user + system, all threads; on a loaded machine a steadier figure than wall time) and
/// its peak resident memory (VmHWM).
/// </summary>
public static class GptTrainRunner
{
    public static void Run(string[] args)
    {
        int iters = 200;
        bool profile = false, byShape = false;
        string shape = "small";
        var device = Device.Cpu;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--iters") iters = int.Parse(args[++i]);
            else if (args[i] == "--profile") profile = true;
            else if (args[i] == "--profile-shapes") profile = byShape = true;
            else if (args[i] == "--device") device = Device.Parse(args[++i]);
            else if (args[i] == "--shape") shape = args[++i];
            else throw new ArgumentException($"gpt-train: unknown argument '{args[i]}' (expected --iters N, --shape small|big, --profile, --profile-shapes, --device D)");
        }
        OpProfiler? profiler = profile ? new OpProfiler(Backends.For(device)) { ByShape = byShape } : null;
        if (profiler is not null) Backends.Register(profiler);
        string text = File.ReadAllText(DataFiles.Find("data/tinyshakespeare.txt"));
        var tokenizer = CharTokenizer.FromText(text);
        var data = TextDataset.FromText(text, tokenizer);
        var (nLayer, nHead, nEmbd, blockSize, batch) = shape switch
        {
            "small" => (4, 4, 128, 64, 12),
            "big" => (6, 6, 384, 256, 8),
            _ => throw new ArgumentException($"gpt-train: --shape {shape}: expected small or big"),
        };
        var config = new GptConfig(BlockSize: blockSize, VocabSize: tokenizer.VocabSize, NLayer: nLayer, NHead: nHead, NEmbd: nEmbd, Dropout: 0, Bias: false);
        var model = new GPT(config, new Generator(1337), device);
        var optimizer = new AdamW(model.NamedParameters(), 1e-3, 0.9, 0.99, 1e-8, 0.1);
        var schedule = new CosineSchedule(1e-3, 1e-4, 100, 2000);
        var batches = new Generator(1338);

        var times = new List<double>();
        double loss = 0;
        var clock = new Stopwatch();
        (int G0, int G1, int G2, long Bytes) gcStart = default;
        TimeSpan cpuStart = default;
        var phases = new double[3]; // forward, backward, optimizer (clip + AdamW) in ms, after warm-up
        var cpuPhases = new double[3]; // the same in process CPU ms
        for (int it = 0; it < iters; it++)
        {
            if (it == Math.Min(10, iters / 2))
            {
                profiler?.Reset();
                Array.Clear(phases);
                Array.Clear(cpuPhases);
                gcStart = (GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalAllocatedBytes());
                cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
            }
            optimizer.LearningRate = schedule.LearningRate(it);
            clock.Restart();
            var (x, y) = data.GetBatch(Split.Train, batch, config.BlockSize, batches); // (B, T), (B, T)
            (x, y) = (x.To(device), y.To(device));
            double t0 = clock.Elapsed.TotalMilliseconds, c0 = OpProfiler.ProcessCpuMs();
            var l = model.Forward(x, y).Loss!;
            double t1 = clock.Elapsed.TotalMilliseconds, c1 = OpProfiler.ProcessCpuMs();
            l.Backward();
            double t2 = clock.Elapsed.TotalMilliseconds, c2 = OpProfiler.ProcessCpuMs();
            GradClip.ClipGradNorm(model.Parameters(), 1.0);
            optimizer.Step();
            optimizer.ZeroGrad();
            double t3 = clock.Elapsed.TotalMilliseconds, c3 = OpProfiler.ProcessCpuMs();
            phases[0] += t1 - t0; phases[1] += t2 - t1; phases[2] += t3 - t2;
            cpuPhases[0] += c1 - c0; cpuPhases[1] += c2 - c1; cpuPhases[2] += c3 - c2;
            loss = l.Item();
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        var steady = times.Skip(Math.Min(10, times.Count / 2)).Order().ToList();
        double ms = steady[steady.Count / 2];
        double cpuMs = (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalMilliseconds / steady.Count;
        if (profile)
        {
            int n = Math.Max(1, iters - Math.Min(10, iters / 2));
            Console.WriteLine($"forward {phases[0] / n:F2} ms, backward {phases[1] / n:F2} ms, optimizer {phases[2] / n:F2} ms per iteration (wall)");
            Console.WriteLine($"forward {cpuPhases[0] / n:F2} ms, backward {cpuPhases[1] / n:F2} ms, optimizer {cpuPhases[2] / n:F2} ms per iteration (process CPU)");
            profiler!.Print(Console.Out, n);
            Console.WriteLine($"per iteration: {(GC.GetTotalAllocatedBytes() - gcStart.Bytes) / n / 1e6:F1} MB allocated, GCs gen0 {(GC.CollectionCount(0) - gcStart.G0) / (double)n:F2}, gen1 {(GC.CollectionCount(1) - gcStart.G1) / (double)n:F2}, gen2 {(GC.CollectionCount(2) - gcStart.G2) / (double)n:F2}");
        }
        Console.WriteLine($"ours shape={shape} threads={Environment.ProcessorCount} iters={iters} ms_per_iter={ms:F2} tokens_per_s={batch * config.BlockSize / ms * 1000:F0} final_loss={loss:F4} peak_rss_mb={PeakRssMb():F0} cpu_ms_per_iter={cpuMs:F2}");
    }

    /// <summary>The process's peak resident set (VmHWM), as the other runners report it.</summary>
    private static double PeakRssMb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
        return double.NaN;
    }
}
