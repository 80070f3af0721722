using System.Diagnostics;
using ManagedTensor.Models.Detection.Yolo;

namespace ManagedTensor.Bench;

/// <summary>
/// `yolo --mode forward|train [--model yolov8n] [--imgsz 640] [--batch N] [--iters N] [--warmup N] [--device D] [--profile]`:
/// our side of bench/yolo_vs_torch.sh, the workload of <see cref="YoloSpeed"/> (forward: eval mode, fused batch norm,
/// batch 1; train: one training step, batch 2). Each iteration is timed alone; the figure is the median after the
/// warm-up iterations. Also printed: the parameter count (the script checks PyTorch's model has the same), process CPU
/// time, minor page faults per iteration and peak RSS; on a GPU (`--device cuda`, or `ilgpu-cpu` to try the GPU
/// backend's path on the CPU) the device is synchronized around each timing and its allocator's peak is printed too.
/// On a GPU host without the .NET SDK the same workload runs as `mt bench yolo` from the bundle (scripts/gpu_checks.sh).
/// `--profile` (CPU only): per-op times and page faults (OpProfiler) and a table of the step's phases (StepPhases).
/// </summary>
public static class YoloRunner
{
    public static void Run(string[] args)
    {
        string mode = "forward", name = "yolov8n", device = "cpu";
        int imgsz = 640, batch = -1, iters = 8, warmup = 2;
        bool profile = false;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--mode") mode = args[++i];
            else if (args[i] == "--model") name = args[++i];
            else if (args[i] == "--imgsz") imgsz = int.Parse(args[++i]);
            else if (args[i] == "--batch") batch = int.Parse(args[++i]);
            else if (args[i] == "--iters") iters = int.Parse(args[++i]);
            else if (args[i] == "--warmup") warmup = int.Parse(args[++i]);
            else if (args[i] == "--device") device = args[++i];
            else if (args[i] == "--profile") profile = true;
            else throw new ArgumentException($"yolo: unknown argument '{args[i]}' (expected --mode forward|train, --model M, --imgsz N, --batch N, --iters N, --warmup N, --device cpu|cuda|ilgpu-cpu, --profile)");
        }
        if (iters <= warmup) throw new ArgumentException($"yolo: --iters {iters} must exceed --warmup {warmup}");
        var dev = Device.Parse(device);
        if (profile && dev.Kind != DeviceKind.Cpu) throw new ArgumentException($"yolo: --profile times CPU kernels; it cannot profile --device {device}");

        var run = new YoloSpeed(mode, name, imgsz, batch, dev);
        OpProfiler? profiler = profile ? new OpProfiler(Backends.For(Device.Cpu)) { ByShape = true } : null;
        if (profiler is not null) Backends.Register(profiler);
        var times = new List<double>();
        double cpuStart = 0;
        long faultStart = 0;
        var phases = new StepPhases(YoloSpeed.TrainPhases);
        for (int it = 0; it < iters; it++)
        {
            if (it == warmup)
            {
                cpuStart = OpProfiler.ProcessCpuMs();
                faultStart = OpProfiler.MinorFaults();
                profiler?.Reset();
                phases.Reset();
                run.ResetDevicePeak();
            }
            phases.Start();
            times.Add(run.Iteration(phases.Mark));
            Console.Error.WriteLine($"yolo {mode} iteration {it + 1}/{iters}: {times[^1]:F0} ms");
        }
        int timed = iters - warmup;
        double cpuMs = (OpProfiler.ProcessCpuMs() - cpuStart) / timed;
        long faults = (OpProfiler.MinorFaults() - faultStart) / timed;
        double ms = YoloSpeed.Median(times.Skip(warmup).ToList());
        profiler?.Print(Console.Out, timed);
        if (profile && mode == "train") phases.Print(Console.Out, timed);
        string devicePeak = run.DevicePeakBytes is long peak ? $" device={dev} device_peak_mb={peak / 1048576.0:F0}" : "";
        Console.WriteLine($"ours mode={mode} model={name} imgsz={imgsz} batch={run.Batch} threads={Environment.ProcessorCount} iters={timed} params={run.Model.ParameterCount()} " +
                          $"ms_per_iter={ms:F1} images_per_s={run.Batch * 1000 / ms:F3} loss={run.Loss:F4} peak_rss_mb={PeakRssMb():F0} cpu_ms_per_iter={cpuMs:F1} page_faults_per_iter={faults}{devicePeak}");
    }

    private static double PeakRssMb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
        return double.NaN;
    }
}
