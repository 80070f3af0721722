using System.Diagnostics;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Training;

namespace ManagedTensor.Bench;

/// <summary>
/// `finetune-step`: where one `mt finetune` step goes, op by op (<see cref="OpProfiler"/>), and the device memory peak
/// of the steps, without the evaluations that `mt finetune` runs before its first step. Written to find why a
/// stories260K step on ILGPU's CPU accelerator took minutes (README, "Fine-tuning").
/// Usage: finetune-step [--device D] [--batch B] [--block T] [--iters N] [--quantize nf4] [--profile]
/// (with --profile the profiler stands in for the device's backend, which has no allocator statistics: no peak is printed).
/// </summary>
public static class FinetuneStepRunner
{
    public static void Run(string[] args)
    {
        var device = Device.IlgpuCpu;
        int batch = 8, block = 128, iters = 2;
        string quantize = "none";
        bool profile = false;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--device") device = Device.Parse(args[++i]);
            else if (args[i] == "--batch") batch = int.Parse(args[++i]);
            else if (args[i] == "--block") block = int.Parse(args[++i]);
            else if (args[i] == "--iters") iters = int.Parse(args[++i]);
            else if (args[i] == "--quantize") quantize = args[++i];
            else if (args[i] == "--profile") profile = true;
            else throw new ArgumentException($"finetune-step: unknown argument '{args[i]}' (expected --device D, --batch B, --block T, --iters N, --quantize nf4, --profile)");
        }
        var profiler = profile ? new OpProfiler(Backends.For(device)) { ByShape = true } : null;
        if (profiler is not null) Backends.Register(profiler);
        var cfg = new FinetuneConfig
        {
            Tokenizer = DataFiles.Find("data/stories260K/tok512.bin"),
            OutDir = Path.Combine(Path.GetTempPath(), $"mt-finetune-step-{Environment.ProcessId}"),
            BatchSize = batch,
            BlockSize = block,
            MaxIters = iters,
            LearningRate = 5e-3,
            Quantize = quantize,
        };
        var trainer = FinetuneTrainer.Create(cfg, device, replaceExisting: true);
        Console.WriteLine($"finetune-step: stories260K, batch {batch} x {block}, --quantize {quantize}, {device}");
        for (int it = 0; it < iters; it++)
        {
            if (it == 1) profiler?.Reset(); // the first step compiles every kernel it launches
            var clock = Stopwatch.StartNew();
            double cpu0 = OpProfiler.ProcessCpuMs();
            double loss = trainer.TrainStep(it);
            Console.WriteLine($"step {it}: loss {loss:F4}, {clock.Elapsed.TotalSeconds:F2} s wall, {(OpProfiler.ProcessCpuMs() - cpu0) / 1e3:F2} s CPU");
        }
        if (DeviceMemory.Stats(device) is { } mem)
            Console.WriteLine($"device memory peak {mem.DescribePeak()}");
        profiler?.Print(Console.Out, Math.Max(1, iters - 1));
        Directory.Delete(cfg.OutDir, recursive: true);
    }
}
