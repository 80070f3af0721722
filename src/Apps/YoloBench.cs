using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using ManagedTensor.Models.Detection.Yolo;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt bench yolo --mode forward|train [--device cuda|cpu|ilgpu-cpu] [--imgsz 640] [--batch N] [--iters N] [--warmup N]`:
/// issue 17's YOLOv8n workload (<see cref="YoloSpeed"/>: a batch-1 fused forward, or a batch-2 training step) from the
/// self-contained bundle, for GPU hosts without the .NET SDK. The device is synchronized around every timed iteration;
/// the figure is the median after the warm-up. One result line in bench/YoloRunner.cs's format ("ours mode=... params=...
/// ms_per_iter=... images_per_s=... peak_rss_mb=... device_peak_mb=..."), so that scripts/gpu_checks.sh BUNDLE OUT yolo can put it next
/// to bench/yolo_torch.py --device cuda with bench/bench_table.py.
/// </summary>
public static class YoloBench
{
    public static Command Create(TextWriter output)
    {
        var device = Cli.DeviceOption("cuda");
        var mode = new Option<string>("--mode") { Description = "forward (batch 1, eval, fused batch norm) or train (one training step, batch 2)", DefaultValueFactory = _ => "forward" };
        mode.AcceptOnlyFromAmong("forward", "train");
        var model = new Option<string>("--model") { Description = string.Join(", ", YoloConfig.Sizes), DefaultValueFactory = _ => "yolov8n" };
        model.AcceptOnlyFromAmong([.. YoloConfig.Sizes]);
        var imgsz = new Option<int>("--imgsz") { Description = "input height and width, a multiple of 32", DefaultValueFactory = _ => 640 }.AtLeast(32);
        var batch = new Option<int>("--batch") { Description = "images per step (0: 1 for forward, 2 for train)", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var iters = new Option<int>("--iters") { Description = "iterations in all, warm-up included", DefaultValueFactory = _ => 10 }.AtLeast(2);
        var warmup = new Option<int>("--warmup") { Description = "untimed first iterations (kernel compilation, the allocator's first blocks)", DefaultValueFactory = _ => 3 }.AtLeast(1);
        var cmd = new Command("yolo", "YOLOv8 forward images/s and training step ms (issue 17), the device synchronized around each timing")
            { device, mode, model, imgsz, batch, iters, warmup };
        cmd.SetAction(p =>
        {
            int size = p.GetValue(imgsz), n = p.GetValue(iters), w = p.GetValue(warmup);
            if (size % 32 != 0) throw new UserErrorException($"--imgsz {size}: must be a multiple of 32 (YOLOv8's largest stride)");
            if (n <= w) throw new UserErrorException($"--iters {n} must exceed --warmup {w}");
            int b = p.GetValue(batch);
            var run = new YoloSpeed(p.GetValue(mode)!, p.GetValue(model)!, size, b == 0 ? -1 : b, Cli.ParseDevice(p.GetValue(device)!));
            Run(run, n, w, output);
            return 0;
        });
        return cmd;
    }

    public static void Run(YoloSpeed run, int iters, int warmup, TextWriter output)
    {
        var times = new List<double>();
        for (int it = 0; it < iters; it++)
        {
            if (it == warmup) run.ResetDevicePeak();
            times.Add(run.Iteration());
            Console.Error.WriteLine($"yolo {run.Mode} iteration {it + 1}/{iters}: {times[^1]:F0} ms");
        }
        double ms = YoloSpeed.Median(times.Skip(warmup).ToList());
        string peak = run.DevicePeakBytes is long bytes ? $" device_peak_mb={bytes / 1048576.0:F0}" : "";
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"ours mode={run.Mode} model={run.Model.Config.Name} imgsz={run.ImageSize} batch={run.Batch} device={run.Device} iters={iters - warmup} " +
            $"params={run.Model.ParameterCount()} ms_per_iter={ms:F1} images_per_s={run.Batch * 1000 / ms:F3} loss={run.Loss:F4} " +
            $"peak_rss_mb={Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0:F0}{peak}")); // host memory (VmHWM), then the device's
    }
}
