using System.Diagnostics;
using ManagedTensor.Models.Training;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>What the trainer reports as it goes (the app draws a progress bar or prints lines).</summary>
public interface IYoloTrainObserver
{
    void OnStart(YoloTrainer trainer, int trainImages, int valImages);
    void OnStep(int epoch, int batch, int batches, YoloLoss.Result loss, double lr, double msPerStep);
    void OnEpoch(YoloEpochLog log, string checkpoint, bool best);
}

/// <summary>
/// Trains a YOLOv8 on a dataset in the Ultralytics layout, a small version of Ultralytics' trainer:
///   per epoch, the training images in an order drawn from (seed, epoch), each augmented from (seed, epoch, image),
///   letterboxed to imgsz, in batches; AdamW (decay on conv weights only), linear warm-up over the first steps, then
///   the learning rate falling linearly to FinalLrFraction of itself by the last epoch; gradients clipped to norm 10;
///   after each epoch: mAP on the val split, OUT/last.safetensors, and OUT/best.safetensors when mAP@0.5:0.95 improved.
/// Everything random is a function of the seed and the epoch, so --resume (from the end of an epoch) continues
/// exactly as if the run had not stopped. Not done here (Ultralytics has them): mosaic, an EMA of the weights.
/// </summary>
public sealed class YoloTrainer
{
    public YoloTrainer(YoloTrainConfig config, Device device, bool resume)
    {
        config.Validate();
        Config = config;
        Device = device;
        Data = YoloDataset.Open(config.Data);
        _train = Data.Images("train");
        _val = Data.Images("val");
        if (resume)
        {
            var ck = YoloCheckpoint.Load(Path.Combine(config.OutDir, YoloCheckpoint.LastFileName), device);
            if (ck.Train with { Epochs = config.Epochs } != config)
                throw new UserErrorException($"--resume: the run in {config.OutDir} was started with other settings ({ck.Train}); only --epochs may change");
            if (!ck.Names.SequenceEqual(Data.Names)) throw new UserErrorException($"--resume: the run's classes ({string.Join(", ", ck.Names)}) are not the dataset's");
            Model = ck.Model;
            State = ck.State;
            Optimizer = NewOptimizer();
            Optimizer.LoadState(ck.Optimizer, ck.State.Steps, YoloCheckpoint.LastFileName);
        }
        else
        {
            Model = new YoloV8(YoloConfig.For(config.Model, Data.Classes), new Generator((ulong)config.Seed), device);
            State = new YoloTrainState(0, 0, -1, []); // mAP is at least 0, so the first epoch is the best so far
            Optimizer = NewOptimizer();
        }
    }

    private readonly IReadOnlyList<string> _train, _val;
    private readonly Dictionary<string, (RgbImage, List<Detection>)> _cache = [];
    public YoloTrainConfig Config { get; }
    public Device Device { get; }
    public YoloDataset Data { get; }
    public YoloV8 Model { get; }
    public AdamW Optimizer { get; }
    public YoloTrainState State { get; private set; }
    public int Batches => (_train.Count + Config.Batch - 1) / Config.Batch;

    private AdamW NewOptimizer() => new(Model.NamedParameters(), Config.Lr, 0.9, 0.999, 1e-8, Config.WeightDecay);

    /// <summary>Runs the remaining epochs (stops at the end of the epoch in which <paramref name="stop"/> fires).</summary>
    public void Run(IYoloTrainObserver observer, CancellationToken stop = default)
    {
        observer.OnStart(this, _train.Count, _val.Count);
        for (int epoch = State.Epochs; epoch < Config.Epochs && !stop.IsCancellationRequested; epoch++)
        {
            Model.TrainMode();
            var order = Shuffled(_train.Count, new Generator((ulong)Config.Seed, (ulong)epoch << 40));
            double box = 0, cls = 0, dfl = 0;
            int steps = State.Steps;
            for (int b = 0; b < Batches; b++)
            {
                var clock = Stopwatch.StartNew();
                var idx = order.Skip(b * Config.Batch).Take(Config.Batch).ToList();
                var (x, gts) = Batch(idx, epoch);
                double lr = LearningRate(steps, epoch);
                Optimizer.LearningRate = lr;
                var loss = YoloLoss.Compute(Model.Forward(x), gts, Data.Classes, Model.Config.RegMax, Config.ImgSz, Config.ImgSz);
                double total = loss.Total.Item();
                if (!double.IsFinite(total))
                    throw new TrainingDivergedException(steps, $"the loss became {total} at epoch {epoch + 1}, batch {b + 1}; the last good checkpoint is kept");
                Optimizer.ZeroGrad();
                loss.Total.Backward();
                GradClip.ClipGradNorm(Model.Parameters(), 10.0);
                Optimizer.Step();
                steps++;
                (box, cls, dfl) = (box + loss.Box, cls + loss.Cls, dfl + loss.Dfl);
                observer.OnStep(epoch, b, Batches, loss, lr, clock.Elapsed.TotalMilliseconds);
            }
            var map = Validate(Model, Data, _val, Config.ImgSz, Device);
            var log = new YoloEpochLog(epoch + 1, box / Batches, cls / Batches, dfl / Batches, map.Map50, map.Map50To95);
            bool best = map.Map50To95 > State.BestMap50To95;
            State = new YoloTrainState(epoch + 1, steps, Math.Max(State.BestMap50To95, map.Map50To95), [.. State.History, log]);
            string last = Path.Combine(Config.OutDir, YoloCheckpoint.LastFileName);
            YoloCheckpoint.Save(last, Model, Data.Names, Config, State, Optimizer);
            if (best) IO.AtomicFile.Copy(last, Path.Combine(Config.OutDir, YoloCheckpoint.BestFileName));
            observer.OnEpoch(log, last, best);
        }
    }

    /// <summary>Warm-up from 0 over the first WarmupIters steps, times the linear decay of the epoch.</summary>
    private double LearningRate(int step, int epoch)
    {
        double decay = (1 - (double)epoch / Config.Epochs) * (1 - Config.FinalLrFraction) + Config.FinalLrFraction;
        double warm = Config.WarmupIters > 0 ? Math.Min(1, (step + 1.0) / Config.WarmupIters) : 1;
        return Config.Lr * decay * warm;
    }

    private (Tensor X, List<IReadOnlyList<GtBox>> Gts) Batch(List<int> indices, int epoch)
    {
        var images = new List<RgbImage>();
        var gts = new List<IReadOnlyList<GtBox>>();
        var augment = new YoloAugment();
        foreach (int i in indices)
        {
            var (img, boxes) = Letterboxed(_train[i], Config.ImgSz);
            var g = new Generator((ulong)Config.Seed + 1, ((ulong)epoch * (ulong)_train.Count + (ulong)i) << 24);
            var (a, bx) = augment.Apply(img, boxes, g);
            images.Add(a);
            gts.Add(bx.Select(d => new GtBox(d.Class, d.X, d.Y, d.Right, d.Bottom)).ToList());
        }
        return (YoloPostprocess.ToTensor(images, Device), gts);
    }

    /// <summary>An image letterboxed to <paramref name="size"/> with its boxes on the letterboxed pixels (cached: decoding is slow).</summary>
    private (RgbImage, List<Detection>) Letterboxed(string path, int size)
    {
        if (_cache.TryGetValue(path, out var hit)) return hit;
        var (img, boxes) = Data.Load(path);
        var (boxed, map) = Letterbox.Apply(img, size);
        return _cache[path] = (boxed, boxes.Select(map.ToInput).ToList());
    }

    private static int[] Shuffled(int n, Generator g)
    {
        var p = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i > 0; i--)
        {
            int j = g.NextInt(i + 1);
            (p[i], p[j]) = (p[j], p[i]);
        }
        return p;
    }

    /// <summary>mAP of <paramref name="model"/> (put in eval mode, left there) on <paramref name="images"/> at val's confidence 0.001.</summary>
    public static MeanAveragePrecision.Result Validate(YoloV8 model, YoloDataset data, IReadOnlyList<string> images, int size, Device device, int batch = 16)
    {
        model.Eval();
        var predictions = new List<IReadOnlyList<Detection>>();
        var truths = new List<IReadOnlyList<Detection>>();
        using var noGrad = GradMode.NoGrad();
        for (int start = 0; start < images.Count; start += batch)
        {
            var items = images.Skip(start).Take(batch).Select(data.Load).ToList();
            var boxed = items.Select(it => Letterbox.Apply(it.Image, size)).ToList();
            var decoded = model.Predict(YoloPostprocess.ToTensor(boxed.Select(b => b.Image).ToList(), device));
            int cells = decoded.Shape[2];
            var values = decoded.ToDoubleArray();
            for (int i = 0; i < items.Count; i++)
            {
                predictions.Add(YoloPostprocess.Boxes(values, i, data.Classes, cells, YoloPostprocess.ValConfidence).Select(boxed[i].Map.ToImage).ToList());
                truths.Add(items[i].Boxes);
            }
        }
        return MeanAveragePrecision.Evaluate(predictions, truths, data.Classes);
    }
}
