using System.Diagnostics;

namespace ManagedTensor.Bench;

/// <summary>
/// `norm-silu [--reps N]`: YOLOv8n's conv-block tail at its training-step shapes (batch 2, 640 x 640), batch norm
/// then SiLU as two ops (BatchNorm2d, Silu; backward SiluBackward, BatchNorm2dBackward) against the fused op
/// (BatchNormSilu2d and its backward), interleaved; each figure is the best of --reps runs, process CPU ms per call.
/// Threads: all the process may use; `taskset -c 0` for one core.
/// </summary>
public static class NormSiluRunner
{
    private static readonly int[][] Shapes = [[2, 16, 320, 320], [2, 32, 160, 160], [2, 64, 80, 80], [2, 128, 40, 40], [2, 256, 20, 20]];

    public static void Run(string[] args)
    {
        int reps = 5;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--reps") reps = int.Parse(args[++i]);
            else throw new ArgumentException($"norm-silu: unknown argument '{args[i]}' (expected --reps N)");
        }
        Console.WriteLine($"{"shape",-20} {"fwd 2 ops",10} {"fwd fused",10} {"bwd 2 ops",10} {"bwd fused",10}  (cpu ms per call, best of {reps})");
        var gen = new Generator(0);
        foreach (var shape in Shapes)
        {
            int c = shape[1];
            var x = Tensor.Randn(shape, gen);
            var dz = Tensor.Randn(shape, gen);
            var w = Tensor.Rand([c], gen, 0.5, 1.5);
            var b = Tensor.Rand([c], gen, -1, 1);
            var (y, mean, invstd) = x.BatchNorm2d(w, b, 1e-3); // what the forward saved for the backward
            var best = new double[4];
            Array.Fill(best, double.MaxValue);
            for (int r = 0; r <= reps; r++) // the first round warms up
            {
                x = Tensor.Randn(shape, gen); // a fresh input, out of cache as a conv's output of this size mostly is
                (y, mean, invstd) = x.BatchNorm2d(w, b, 1e-3);
                var t = new[]
                {
                    Time(() => x.BatchNorm2d(w, b, 1e-3).Y.Silu()),
                    Time(() => x.BatchNormSilu2d(w, b, 1e-3)),
                    Time(() => Tensor.Apply(BatchNormOps.BatchNorm2dBackward, null, Tensor.Apply(SiluBackwardOps.SiluBackward, null, dz, y)[0], x, w, mean, invstd)),
                    Time(() => Tensor.Apply(BatchNormSiluOps.BatchNormSilu2dBackward, null, dz, x, w, b, mean, invstd)),
                };
                if (r > 0) for (int k = 0; k < 4; k++) best[k] = Math.Min(best[k], t[k]);
            }
            Console.WriteLine($"{Tensor.ShapeString(shape),-20} {best[0],10:F2} {best[1],10:F2} {best[2],10:F2} {best[3],10:F2}");
        }
    }

    private static double Time(Action body)
    {
        double start = OpProfiler.ProcessCpuMs();
        body();
        return OpProfiler.ProcessCpuMs() - start;
    }
}
