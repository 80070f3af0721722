using System.Diagnostics;
using ManagedTensor.Gpu;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>
/// The speed workload of issue 17, on any device: YOLOv8 with 80 classes (Ultralytics' COCO head) at imgsz x imgsz
/// on seeded uniform noise, with fixed boxes (<see cref="Boxes"/>, the ones bench/yolo_torch.py uses).
///   forward: eval mode, batch norm folded into the convs, no gradients: the head's outputs decoded to boxes and
///            class probabilities and read back to the host (as postprocessing would), batch 1 by default;
///   train:   one training step as YoloTrainer takes it: forward in training mode (batch statistics), the TAL
///            assigner and the CIoU + DFL + BCE loss, backward, gradient clipping at norm 10, AdamW; batch 2 by default.
/// One instance serves `ManagedTensor.Bench yolo` (bench/YoloRunner.cs: the CPU profile, phases, page faults) and
/// `mt bench yolo` (src/Apps/YoloBench.cs: the self-contained bundle that scripts/gpu_checks.sh runs on a GPU host), so
/// both time the same step. On a GPU the device is synchronized before each phase mark and at the end of an iteration,
/// as torch.cuda.synchronize() does on the PyTorch side, so that host clocks measure the device's work.
/// </summary>
public sealed class YoloSpeed
{
    /// <summary>Ground-truth boxes (class, x0, y0, x1, y1 on a 640 x 640 input) of image i, cycled; scaled to other sizes.</summary>
    private static readonly (int C, double X0, double Y0, double X1, double Y1)[][] Boxes =
    [
        [(0, 100, 120, 300, 360), (5, 350, 200, 600, 500), (17, 40, 400, 180, 620)],
        [(2, 200, 150, 450, 420), (41, 10, 10, 120, 90)],
    ];

    /// <summary>The phases of a training step, in the order <see cref="Iteration"/> marks them.</summary>
    public static readonly string[] TrainPhases = ["forward", "loss + assigner", "backward", "clip + AdamW"];

    private readonly Tensor _x;                                   // (N, 3, S, S) in [0, 1)
    private readonly List<IReadOnlyList<GtBox>> _targets;
    private readonly AdamW? _optimizer;

    public YoloSpeed(string mode, string model, int imageSize, int batch, Device device)
    {
        if (mode is not ("forward" or "train")) throw new ArgumentException($"yolo: --mode {mode}: expected forward or train");
        if (imageSize <= 0 || imageSize % 32 != 0) throw new ArgumentException($"yolo: --imgsz {imageSize}: expected a positive multiple of 32 (YOLOv8's largest stride)");
        if (batch < 0) batch = mode == "forward" ? 1 : 2;
        if (batch == 0) throw new ArgumentException("yolo: --batch 0: expected at least one image");
        (Mode, ImageSize, Batch, Device) = (mode, imageSize, batch, device);
        Model = new YoloV8(YoloConfig.For(model, 80), new Generator(0), device);
        _x = Tensor.Rand([batch, 3, imageSize, imageSize], new Generator(1), device: device);
        double scale = imageSize / 640.0;
        _targets = Enumerable.Range(0, batch).Select(b => (IReadOnlyList<GtBox>)Boxes[b % Boxes.Length]
            .Select(g => new GtBox(g.C, g.X0 * scale, g.Y0 * scale, g.X1 * scale, g.Y1 * scale)).ToList()).ToList();
        if (mode == "forward") Model.Fuse();
        else
        {
            Model.TrainMode();
            _optimizer = new AdamW(Model.NamedParameters(), 1e-3, 0.9, 0.999, 1e-8, 5e-4);
        }
    }

    public string Mode { get; }
    public int ImageSize { get; }
    public int Batch { get; }
    public Device Device { get; }
    public YoloV8 Model { get; }

    /// <summary>The training loss of the last step (NaN in forward mode).</summary>
    public double Loss { get; private set; } = double.NaN;

    /// <summary>
    /// One forward or training step; in train mode <paramref name="mark"/>(i) is called at the end of phase i of
    /// <see cref="TrainPhases"/>, after the device has finished it. Returns the step's wall-clock milliseconds.
    /// </summary>
    public double Iteration(Action<int>? mark = null)
    {
        var clock = Stopwatch.StartNew();
        if (_optimizer is null)
        {
            using var noGrad = GradMode.NoGrad();
            Model.Predict(_x).ToDoubleArray(); // (N, 84, 8400) read back to the host, which waits for the device
        }
        else
        {
            var outputs = Model.Forward(_x);
            Mark(mark, 0);
            var l = YoloLoss.Compute(outputs, _targets, 80, Model.Config.RegMax, ImageSize, ImageSize);
            Mark(mark, 1);
            _optimizer.ZeroGrad();
            l.Total.Backward();
            Mark(mark, 2);
            GradClip.ClipGradNorm(Model.Parameters(), 10.0);
            _optimizer.Step();
            Loss = l.Total.Item(); // a read back: the optimizer's kernels have run
            Mark(mark, 3);
        }
        Synchronize();
        return clock.Elapsed.TotalMilliseconds;
    }

    private void Mark(Action<int>? mark, int phase)
    {
        if (mark is null) return;
        Synchronize();
        mark(phase);
    }

    /// <summary>Waits for the device's queued work (nothing to wait for on the CPU backend).</summary>
    public void Synchronize()
    {
        if (Backends.For(Device) is IDeviceMemory memory) memory.Synchronize();
    }

    /// <summary>The device allocator's peak bytes since the last <see cref="ResetDevicePeak"/>; null on the CPU.</summary>
    public long? DevicePeakBytes => Backends.For(Device) is IDeviceMemory memory ? memory.Stats.PeakBytes : null;

    public void ResetDevicePeak()
    {
        if (Backends.For(Device) is IDeviceMemory memory) memory.ResetPeak();
    }

    /// <summary>The median of the timed iterations' milliseconds (the mean of the middle two for an even count).</summary>
    public static double Median(IReadOnlyList<double> ms)
    {
        if (ms.Count == 0) throw new ArgumentException("yolo: no timed iterations");
        var s = ms.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
