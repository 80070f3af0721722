using System.Diagnostics;
using System.Globalization;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Training;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Vision;

/// <summary>Settings of `mt classify train`.</summary>
public sealed record ClassifierTrainConfig(
    string OutDir = "out-classifier", int Epochs = 3, int BatchSize = 64, double LearningRate = 2e-3, double WeightDecay = 1e-4,
    int Width = 32, int Hidden = 128, ulong Seed = 1337, int Limit = 0, int LogInterval = 50)
{
    public void Validate()
    {
        if (Epochs < 1) throw new UserErrorException($"--epochs {Epochs}: must be at least 1");
        if (BatchSize < 2) throw new UserErrorException($"--batch-size {BatchSize}: must be at least 2 (batch norm needs two images)");
        if (!(LearningRate > 0)) throw new UserErrorException($"--lr {LearningRate}: must be a positive number");
        if (Limit < 0) throw new UserErrorException($"--limit {Limit}: must be 0 (all) or a positive count");
        if (LogInterval < 1) throw new UserErrorException($"--log-interval {LogInterval}: must be at least 1");
    }
}

/// <summary>
/// Trains <see cref="FashionClassifier"/> on Fashion-MNIST's training split: each epoch a fresh seeded shuffle, batches
/// of BatchSize, AdamW with a cosine schedule over all steps (5% warm-up), then the test accuracy (eval mode, running
/// batch-norm statistics) and a checkpoint of the epoch (classifier.safetensors, replaced atomically). Small runs for
/// tests take --limit images of each split.
/// </summary>
public sealed class ClassifierTrainer(ClassifierTrainConfig cfg, FashionMnist train, FashionMnist test, Device device)
{
    public FashionClassifier Model { get; } = new(new ClassifierConfig(cfg.Width, cfg.Hidden), new Generator(cfg.Seed), device);
    public List<LossPoint> History { get; } = [];
    public double TestAccuracy { get; private set; }

    public string CheckpointPath => Path.Combine(cfg.OutDir, FashionClassifier.FileName);

    public void Run(IImageTrainObserver observer, CancellationToken cancel = default)
    {
        cfg.Validate();
        int stepsPerEpoch = train.Count / cfg.BatchSize, total = stepsPerEpoch * cfg.Epochs;
        if (stepsPerEpoch == 0) throw new UserErrorException($"{train.Count} training images are fewer than one batch of {cfg.BatchSize}");
        var opt = new AdamW(Model.NamedParameters(), cfg.LearningRate, weightDecay: cfg.WeightDecay);
        var schedule = new CosineSchedule(cfg.LearningRate, cfg.LearningRate / 20, Math.Max(1, total / 20), total);
        var shuffleGen = new Generator(cfg.Seed + 1);
        observer.OnStart(0, total);
        int step = 0;
        for (int epoch = 0; epoch < cfg.Epochs; epoch++)
        {
            var order = Shuffle(train.Count, shuffleGen);
            var clock = Stopwatch.StartNew();
            int timed = 0;
            Model.Train();
            for (int b = 0; b < stepsPerEpoch; b++, step++)
            {
                if (cancel.IsCancellationRequested) return;
                var idx = order[(b * cfg.BatchSize)..((b + 1) * cfg.BatchSize)];
                opt.LearningRate = schedule.LearningRate(step);
                var loss = Tensor.CrossEntropy(Model.Forward(train.Batch(idx, device, -1, 1)), train.LabelBatch(idx, device));
                loss.Backward();
                double l = loss.Item();
                if (!double.IsFinite(l)) throw new TrainingDivergedException(step, $"classifier training diverged at step {step}: the loss is {l}; lower --lr ({cfg.LearningRate})");
                opt.Step();
                opt.ZeroGrad();
                timed++;
                if (step % cfg.LogInterval == 0 || step + 1 == total)
                {
                    double ms = clock.Elapsed.TotalMilliseconds / timed;
                    History.Add(new LossPoint(step, l));
                    observer.OnStep(step, l, opt.LearningRate, cfg.BatchSize / ms * 1000, ms);
                    clock.Restart();
                    timed = 0;
                }
            }
            TestAccuracy = Accuracy(Model, test, device);
            History.Add(new LossPoint(step, History[^1].Train, 1 - TestAccuracy));
            Model.Save(CheckpointPath, new Dictionary<string, string>
            {
                ["epoch"] = (epoch + 1).ToString(CultureInfo.InvariantCulture),
                ["test_accuracy"] = TestAccuracy.ToString("R", CultureInfo.InvariantCulture),
            });
            observer.OnMessage($"epoch {epoch + 1}/{cfg.Epochs}: test accuracy {TestAccuracy:P2} ({test.Count:N0} images); saved {CheckpointPath}");
        }
    }

    /// <summary>A seeded Fisher-Yates permutation of 0..n-1.</summary>
    public static int[] Shuffle(int n, Generator gen)
    {
        var order = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i > 0; i--)
        {
            int j = gen.NextInt(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>The fraction of <paramref name="data"/> the model classifies right (eval mode, batches of 500).</summary>
    public static double Accuracy(FashionClassifier model, FashionMnist data, Device device)
    {
        model.Eval();
        int right = 0;
        for (int s = 0; s < data.Count; s += 500)
        {
            var idx = Enumerable.Range(s, Math.Min(500, data.Count - s)).ToArray();
            var pred = model.Predict(data.Batch(idx, device, -1, 1));
            for (int i = 0; i < idx.Length; i++) if (pred[i] == data.Labels[idx[i]]) right++;
        }
        model.Train();
        return (double)right / data.Count;
    }
}
