using System.Diagnostics;
using ManagedTensor.Cpu;

namespace ManagedTensor.Bench;

/// <summary>
/// `conv [--path im2col|direct|both] [--reps N] [--only yolo|unet|shape prefix]`: the CPU Conv2d, its backward input and
/// backward weight at the 3x3 and 1x1 shapes of YOLOv8n's training step (batch 2, 640 x 640) and of the diffusion U-Net
/// (batch 64, 32 x 32), through the im2col + GEMM path and the direct path (CpuConvDirect); bench/conv_torch.py
/// prints PyTorch's figures for the same rows. Each figure is the best of --reps timed runs after one warm-up,
/// as GFLOP/s (2 * N * O * C/g * KH * KW * OH * OW flops per op) and process CPU ms per call. Threads: all the
/// process may use; `taskset -c 0` for one core.
/// </summary>
public static class ConvRunner
{
    /// <summary>A convolution as PyTorch writes it: x (N, C, H, W), w (O, C, K, K), stride, padding.</summary>
    public readonly record struct Shape(string Net, int N, int C, int H, int W, int O, int K, int Stride, int Pad)
    {
        public int OH => (H + 2 * Pad - K) / Stride + 1;
        public int OW => (W + 2 * Pad - K) / Stride + 1;
        public double Flops => 2.0 * N * O * C * K * K * OH * OW;
        public override string ToString() => $"[{N},{C},{H},{W}]x[{O},{C},{K},{K}] s{Stride}";
    }

    /// <summary>The shapes; bench/conv_torch.py holds the same list.</summary>
    public static readonly Shape[] Shapes =
    [
        new("yolo", 2, 3, 640, 640, 16, 3, 2, 1),
        new("yolo", 2, 16, 320, 320, 32, 3, 2, 1),
        new("yolo", 2, 16, 160, 160, 16, 3, 1, 1),
        new("yolo", 2, 32, 80, 80, 32, 3, 1, 1),
        new("yolo", 2, 64, 80, 80, 64, 3, 1, 1),
        new("yolo", 2, 64, 80, 80, 80, 3, 1, 1),
        new("yolo", 2, 80, 80, 80, 80, 3, 1, 1),
        new("yolo", 2, 64, 40, 40, 64, 3, 1, 1),
        new("yolo", 2, 128, 20, 20, 128, 3, 1, 1),
        new("yolo", 2, 256, 20, 20, 64, 3, 1, 1),
        new("yolo", 2, 64, 80, 80, 64, 3, 2, 1),
        new("yolo", 2, 32, 160, 160, 64, 3, 2, 1),
        new("yolo", 2, 64, 80, 80, 128, 3, 2, 1),
        new("yolo", 2, 128, 40, 40, 256, 3, 2, 1),
        new("yolo", 2, 128, 40, 40, 128, 3, 2, 1),
        new("yolo", 2, 32, 160, 160, 32, 1, 1, 0),
        new("yolo", 2, 48, 160, 160, 32, 1, 1, 0),
        new("yolo", 2, 128, 80, 80, 64, 1, 1, 0),
        new("unet", 64, 32, 32, 32, 32, 3, 1, 1),
        new("unet", 64, 64, 16, 16, 64, 3, 1, 1),
        new("unet", 64, 128, 16, 16, 64, 3, 1, 1),
        new("unet", 64, 64, 8, 8, 64, 3, 1, 1),
        new("unet", 64, 32, 32, 32, 1, 3, 1, 1),
    ];

    public static void Run(string[] args)
    {
        string path = "both", only = "";
        int reps = 3;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--path") path = args[++i];
            else if (args[i] == "--reps") reps = int.Parse(args[++i]);
            else if (args[i] == "--only") only = args[++i];
            else throw new ArgumentException($"conv: unknown argument '{args[i]}' (expected --path im2col|direct|both, --reps N, --only yolo|unet)");
        }
        if (path is not ("im2col" or "direct" or "both")) throw new ArgumentException($"conv: --path {path}: expected im2col, direct or both");
        var paths = path == "both" ? new[] { SgemmIsa.Scalar, Sgemm.Best } : [path == "im2col" ? SgemmIsa.Scalar : Sgemm.Best];
        Console.WriteLine($"threads={Environment.ProcessorCount} isa={Sgemm.Best}; per op: GFLOP/s (process CPU ms per call)");
        Console.WriteLine($"{"shape",-34} {"path",-7} {"forward",16} {"bwd input",16} {"bwd weight",16}");
        foreach (var s in Shapes.Where(s => only == "" || s.Net == only || s.ToString().StartsWith(only, StringComparison.Ordinal)))
        {
            var a = new Conv2dAttrs(s.Stride, s.Stride, s.Pad, s.Pad);
            var x = Tensor.Rand([s.N, s.C, s.H, s.W], new Generator(1));
            var w = Tensor.Rand([s.O, s.C, s.K, s.K], new Generator(2));
            var b = Tensor.Rand([s.O], new Generator(3));
            var dy = Tensor.Rand([s.N, s.O, s.OH, s.OW], new Generator(4));
            var y = Tensor.Zeros([s.N, s.O, s.OH, s.OW]);
            var dx = Tensor.Zeros([s.N, s.C, s.H, s.W]);
            var dw = Tensor.Zeros([s.O, s.C, s.K, s.K]);
            foreach (var isa in paths)
            {
                string f = Time(s, reps, () => CpuConv.Conv2d(x, w, b, y, a, isa));
                string bi = Time(s, reps, () => CpuConv.BackwardInput(dy, w, dx, a, isa));
                string bw = Time(s, reps, () => CpuConv.BackwardWeight(dy, x, dw, a, isa));
                Console.WriteLine($"{s,-34} {(isa == SgemmIsa.Scalar ? "im2col" : "direct"),-7} {f,16} {bi,16} {bw,16}");
            }
        }
    }

    private static string Time(Shape s, int reps, Action op)
    {
        op(); // warm-up: JIT, scratch buffers
        double best = double.MaxValue, bestCpu = double.MaxValue;
        for (int r = 0; r < reps; r++)
        {
            double cpu0 = OpProfiler.ProcessCpuMs();
            var sw = Stopwatch.StartNew();
            op();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
            bestCpu = Math.Min(bestCpu, OpProfiler.ProcessCpuMs() - cpu0);
        }
        return $"{s.Flops / best / 1e9,6:F1} ({bestCpu,6:F1})";
    }
}
