using System.Diagnostics;
using ManagedTensor.Models;
using ManagedTensor.Models.Data;
using ManagedTensor.Optim;

namespace ManagedTensor.Bench;

/// <summary>
/// `gpt-train [--iters N]`: ms/iter and tokens/s of nanoGPT's CPU recipe (4 layers, 4 heads, 128 wide,
/// block 64, batch 12, character-level tiny Shakespeare), one full training step per iteration: batch,
/// forward, backward, gradient clipping, AdamW. Timed exactly as bench/torch_gpt_train.py times PyTorch
/// (median step time after the first 10 steps), so bench/gpt_train_vs_torch.sh can put them side by side.
/// </summary>
public static class GptTrainRunner
{
    public static void Run(string[] args)
    {
        int iters = 200;
        bool profile = false, byShape = false;
        var device = Device.Cpu;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--iters") iters = int.Parse(args[++i]);
            else if (args[i] == "--profile") profile = true;
            else if (args[i] == "--profile-shapes") profile = byShape = true;
            else if (args[i] == "--device") device = Device.Parse(args[++i]);
            else throw new ArgumentException($"gpt-train: unknown argument '{args[i]}' (expected --iters N, --profile, --profile-shapes, --device D)");
        }
        OpProfiler? profiler = profile ? new OpProfiler(Backends.For(device)) { ByShape = byShape } : null;
        if (profiler is not null) Backends.Register(profiler);
        string text = File.ReadAllText(DataFiles.Find("data/tinyshakespeare.txt"));
        var tokenizer = CharTokenizer.FromText(text);
        var data = TextDataset.FromText(text, tokenizer);
        var config = new GptConfig(BlockSize: 64, VocabSize: tokenizer.VocabSize, NLayer: 4, NHead: 4, NEmbd: 128, Dropout: 0, Bias: false);
        var model = new GPT(config, new Generator(1337), device);
        var optimizer = new AdamW(model.NamedParameters(), 1e-3, 0.9, 0.99, 1e-8, 0.1);
        var schedule = new CosineSchedule(1e-3, 1e-4, 100, 2000);
        var batches = new Generator(1338);
        const int batch = 12;

        var times = new List<double>();
        double loss = 0;
        var clock = new Stopwatch();
        (int G0, int G1, int G2, long Bytes) gcStart = default;
        var phases = new double[3]; // forward, backward, optimizer (clip + AdamW) in ms, after warm-up
        for (int it = 0; it < iters; it++)
        {
            if (it == Math.Min(10, iters / 2))
            {
                profiler?.Reset();
                Array.Clear(phases);
                gcStart = (GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalAllocatedBytes());
            }
            optimizer.LearningRate = schedule.LearningRate(it);
            clock.Restart();
            var (x, y) = data.GetBatch(Split.Train, batch, config.BlockSize, batches); // (B, T), (B, T)
            (x, y) = (x.To(device), y.To(device));
            double t0 = clock.Elapsed.TotalMilliseconds;
            var l = model.Forward(x, y).Loss!;
            double t1 = clock.Elapsed.TotalMilliseconds;
            l.Backward();
            double t2 = clock.Elapsed.TotalMilliseconds;
            GradClip.ClipGradNorm(model.Parameters(), 1.0);
            optimizer.Step();
            optimizer.ZeroGrad();
            double t3 = clock.Elapsed.TotalMilliseconds;
            phases[0] += t1 - t0; phases[1] += t2 - t1; phases[2] += t3 - t2;
            loss = l.Item();
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        var steady = times.Skip(Math.Min(10, times.Count / 2)).Order().ToList();
        double ms = steady[steady.Count / 2];
        if (profile)
        {
            int n = Math.Max(1, iters - Math.Min(10, iters / 2));
            Console.WriteLine($"forward {phases[0] / n:F2} ms, backward {phases[1] / n:F2} ms, optimizer {phases[2] / n:F2} ms per iteration");
            profiler!.Print(Console.Out, n);
            Console.WriteLine($"per iteration: {(GC.GetTotalAllocatedBytes() - gcStart.Bytes) / n / 1e6:F1} MB allocated, GCs gen0 {(GC.CollectionCount(0) - gcStart.G0) / (double)n:F2}, gen1 {(GC.CollectionCount(1) - gcStart.G1) / (double)n:F2}, gen2 {(GC.CollectionCount(2) - gcStart.G2) / (double)n:F2}");
        }
        Console.WriteLine($"ours iters={iters} ms_per_iter={ms:F2} tokens_per_s={batch * config.BlockSize / ms * 1000:F0} final_loss={loss:F4}");
    }
}
