using System.Diagnostics;
using ManagedTensor.Models.Detection.Yolo;
using ManagedTensor.Optim;

namespace ManagedTensor.Bench;

/// <summary>
/// `yolo --mode forward|train [--model yolov8n] [--imgsz 640] [--batch N] [--iters N] [--warmup N] [--profile]`:
/// our side of bench/yolo_vs_torch.sh, YOLOv8 with 80 classes (Ultralytics' COCO head) at imgsz x imgsz.
///   forward: eval mode, batch norm folded into the convs, no gradients: the head's outputs decoded to boxes and
///            class probabilities (Ultralytics' Detect in eval mode), batch 1 by default; images/s = batch / time.
///   train:   one training step as YoloTrainer takes it: forward in training mode (batch statistics), the TAL
///            assigner and the CIoU + DFL + BCE loss, backward, gradient clipping at norm 10, AdamW; batch 2.
/// Inputs are seeded uniform noise; the boxes (<see cref="Boxes"/>) are the ones bench/yolo_torch.py uses. Each
/// iteration is timed alone; the figure is the median after the warm-up iterations. Also printed: the parameter
/// count (the script checks PyTorch's model has the same), process CPU time, minor page faults per iteration and peak RSS.
/// </summary>
public static class YoloRunner
{
    /// <summary>Ground-truth boxes (class, x0, y0, x1, y1 on a 640 x 640 input) of image i, cycled; scaled to other sizes.</summary>
    private static readonly (int C, double X0, double Y0, double X1, double Y1)[][] Boxes =
    [
        [(0, 100, 120, 300, 360), (5, 350, 200, 600, 500), (17, 40, 400, 180, 620)],
        [(2, 200, 150, 450, 420), (41, 10, 10, 120, 90)],
    ];

    public static void Run(string[] args)
    {
        string mode = "forward", name = "yolov8n";
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
            else if (args[i] == "--profile") profile = true;
            else throw new ArgumentException($"yolo: unknown argument '{args[i]}' (expected --mode forward|train, --model M, --imgsz N, --batch N, --iters N, --warmup N, --profile)");
        }
        if (mode is not ("forward" or "train")) throw new ArgumentException($"yolo: --mode {mode}: expected forward or train");
        if (batch < 0) batch = mode == "forward" ? 1 : 2;
        if (iters <= warmup) throw new ArgumentException($"yolo: --iters {iters} must exceed --warmup {warmup}");

        var model = new YoloV8(YoloConfig.For(name, 80), new Generator(0), Device.Cpu);
        long parameters = model.ParameterCount();
        var x = Tensor.Rand([batch, 3, imgsz, imgsz], new Generator(1)); // (N, 3, S, S) in [0, 1)
        double scale = imgsz / 640.0;
        var gts = Enumerable.Range(0, batch).Select(b => (IReadOnlyList<GtBox>)Boxes[b % Boxes.Length]
            .Select(g => new GtBox(g.C, g.X0 * scale, g.Y0 * scale, g.X1 * scale, g.Y1 * scale)).ToList()).ToList();
        AdamW? optimizer = null;
        if (mode == "forward") model.Fuse();
        else
        {
            model.TrainMode();
            optimizer = new AdamW(model.NamedParameters(), 1e-3, 0.9, 0.999, 1e-8, 5e-4);
        }

        OpProfiler? profiler = profile ? new OpProfiler(Backends.For(Device.Cpu)) { ByShape = true } : null;
        if (profiler is not null) Backends.Register(profiler);
        var times = new List<double>();
        double cpuStart = 0, loss = double.NaN;
        long faultStart = 0;
        var phases = new StepPhases(["forward", "loss + assigner", "backward", "clip + AdamW"]);
        for (int it = 0; it < iters; it++)
        {
            if (it == warmup) { cpuStart = OpProfiler.ProcessCpuMs(); faultStart = OpProfiler.MinorFaults(); profiler?.Reset(); phases.Reset(); }
            var clock = Stopwatch.StartNew();
            phases.Start();
            if (optimizer is null)
            {
                using var noGrad = GradMode.NoGrad();
                model.Predict(x).ToDoubleArray(); // (N, 84, 8400) read back, as postprocessing would
            }
            else
            {
                var outputs = model.Forward(x);
                phases.Mark(0);
                var l = YoloLoss.Compute(outputs, gts, 80, model.Config.RegMax, imgsz, imgsz);
                phases.Mark(1);
                optimizer.ZeroGrad();
                l.Total.Backward();
                phases.Mark(2);
                GradClip.ClipGradNorm(model.Parameters(), 10.0);
                optimizer.Step();
                loss = l.Total.Item();
                phases.Mark(3);
            }
            times.Add(clock.Elapsed.TotalMilliseconds);
            Console.Error.WriteLine($"yolo {mode} iteration {it + 1}/{iters}: {times[^1]:F0} ms");
        }
        int timed = iters - warmup;
        double cpuMs = (OpProfiler.ProcessCpuMs() - cpuStart) / timed;
        long faults = (OpProfiler.MinorFaults() - faultStart) / timed;
        var steady = times.Skip(warmup).Order().ToList();
        double ms = steady.Count % 2 == 1 ? steady[steady.Count / 2] : (steady[steady.Count / 2 - 1] + steady[steady.Count / 2]) / 2;
        profiler?.Print(Console.Out, timed);
        if (profile && optimizer is not null) phases.Print(Console.Out, timed);
        Console.WriteLine($"ours mode={mode} model={name} imgsz={imgsz} batch={batch} threads={Environment.ProcessorCount} iters={timed} params={parameters} " +
                          $"ms_per_iter={ms:F1} images_per_s={batch * 1000 / ms:F3} loss={loss:F4} peak_rss_mb={PeakRssMb():F0} cpu_ms_per_iter={cpuMs:F1} page_faults_per_iter={faults}");
    }

    private static double PeakRssMb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
        return double.NaN;
    }
}
