using ManagedTensor.Models.Whisper;

namespace ManagedTensor.Bench;

/// <summary>
/// `whisper-train --data DIR [--iters N] [--batch-size B] [--audio-seconds S] [--d-model C] [--layers L] [--profile]`:
/// `mt transcribe train`'s step (WhisperTrainer.Step: reading the WAVs, log-mel, forward, backward, clipping, AdamW) on
/// a real corpus, timed per step in wall and process CPU time, and with --profile split per op and shape (OpProfiler),
/// so one can see whether the encoder's matmuls, attention or the tied ~52k-token output head takes the step's time.
/// </summary>
public static class WhisperTrainRunner
{
    public static void Run(string[] args)
    {
        var cfg = new WhisperTrainConfig { OutDir = Path.Combine(Path.GetTempPath(), $"mt-whisper-bench-{Guid.NewGuid():N}") };
        int iters = 6;
        bool profile = false;
        for (int i = 0; i < args.Length; i++)
        {
            cfg = args[i] switch
            {
                "--data" => cfg with { Data = args[++i] },
                "--batch-size" => cfg with { BatchSize = int.Parse(args[++i]) },
                "--audio-seconds" => cfg with { AudioSeconds = double.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture) },
                "--d-model" => cfg with { DModel = int.Parse(args[++i]) },
                "--layers" => cfg with { Layers = int.Parse(args[++i]) },
                "--iters" => cfg with { MaxIters = iters = int.Parse(args[++i]) },
                "--profile" => cfg,
                _ => throw new ArgumentException($"whisper-train: unknown argument '{args[i]}' (--data DIR, --iters N, --batch-size B, --audio-seconds S, --d-model C, --layers L, --profile)"),
            };
            if (args[i] == "--profile") profile = true;
        }
        OpProfiler? profiler = profile ? new OpProfiler(Backends.For(Device.Cpu)) { ByShape = true } : null;
        if (profiler is not null) Backends.Register(profiler);
        try
        {
            var trainer = WhisperTrainer.Create(cfg, Device.Cpu);
            int warmup = Math.Min(2, iters / 2);
            double wall = 0, cpu = 0;
            for (int it = 0; it < iters; it++)
            {
                if (it == warmup) profiler?.Reset();
                double c0 = OpProfiler.ProcessCpuMs();
                var sw = System.Diagnostics.Stopwatch.StartNew();
                double loss = trainer.Step(it);
                double ms = sw.Elapsed.TotalMilliseconds, cpuMs = OpProfiler.ProcessCpuMs() - c0;
                Console.WriteLine($"step {it}: loss {loss:F4}, {ms:F0} ms wall, {cpuMs:F0} ms CPU");
                if (it >= warmup) (wall, cpu) = (wall + ms, cpu + cpuMs);
            }
            int n = iters - warmup;
            Console.WriteLine($"whisper-train batch={cfg.BatchSize} audio_s={cfg.AudioSeconds} d_model={cfg.DModel} layers={cfg.Layers} ms_per_iter={wall / n:F0} cpu_ms_per_iter={cpu / n:F0}");
            profiler?.Print(Console.Out, n);
        }
        finally { if (Directory.Exists(cfg.OutDir)) Directory.Delete(cfg.OutDir, true); }
    }
}
