using System.Diagnostics;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Training;
using ManagedTensor.Models.Vision;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Diffusion;

/// <summary>Settings of `mt diffuse train` that do not shape the model.</summary>
public sealed record DiffusionTrainConfig(
    string OutDir = "out-diffusion", string DataDir = "", int MaxSteps = 4000, int BatchSize = 64, double LearningRate = 3e-4,
    int WarmupSteps = 100, double GradClip = 1.0, double EmaDecay = 0.999, int SampleEvery = 500, int LogInterval = 10,
    ulong Seed = 1337, int Limit = 0, int SampleSteps = 20, double SampleCfg = 3.0,
    // Which classes' images train (a list such as "0-8" or "9"; empty: all), and a base run to start from with, for
    // LoRA (rank > 0), adapters on LoraTargets scaled by LoraAlpha / rank (see DiffusionLora).
    string Classes = "", string Base = "", int LoraRank = 0, double LoraAlpha = 16, string LoraTargets = "all-linear")
{
    public void Validate()
    {
        if (MaxSteps < 1) throw new UserErrorException($"--max-steps {MaxSteps}: must be at least 1");
        if (BatchSize < 1) throw new UserErrorException($"--batch-size {BatchSize}: must be at least 1");
        if (!(LearningRate > 0)) throw new UserErrorException($"--lr {LearningRate}: must be a positive number");
        if (WarmupSteps < 0) throw new UserErrorException($"--warmup-steps {WarmupSteps}: must be >= 0");
        if (EmaDecay is < 0 or >= 1) throw new UserErrorException($"--ema {EmaDecay}: must be in [0, 1)");
        if (SampleEvery < 1) throw new UserErrorException($"--sample-every {SampleEvery}: must be at least 1");
        if (LogInterval < 1) throw new UserErrorException($"--log-interval {LogInterval}: must be at least 1");
        if (Limit < 0) throw new UserErrorException($"--limit {Limit}: must be 0 (all) or a positive count");
        if (LoraRank < 0) throw new UserErrorException($"--lora-rank {LoraRank}: must be 0 (no LoRA) or a positive rank");
        if (LoraRank > 0 && Base.Length == 0) throw new UserErrorException($"--lora-rank {LoraRank}: LoRA adapts a trained model: give it with --base DIR");
        if (LoraRank > 0 && !(LoraAlpha > 0 && double.IsFinite(LoraAlpha))) throw new UserErrorException($"--lora-alpha {LoraAlpha}: must be a positive number");
        _ = ClassList(FashionMnist.Classes);
    }

    /// <summary>The classes whose images train, from <see cref="Classes"/> ("0-8", "9", "1,3,5"; empty: all of 0..classes-1).</summary>
    public int[] ClassList(int classes)
    {
        if (Classes.Trim().Length == 0) return Enumerable.Range(0, classes).ToArray();
        var list = new SortedSet<int>();
        foreach (string part in Classes.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            string[] ends = part.Split('-', StringSplitOptions.TrimEntries);
            if (ends.Length is < 1 or > 2 || !ends.All(e => int.TryParse(e, out int k) && k >= 0 && k < classes))
                throw new UserErrorException($"--classes {Classes}: '{part}' is not a class id or range of ids in 0..{classes - 1} (e.g. 0-8 or 9 or 1,3,5)");
            int lo = int.Parse(ends[0]), hi = int.Parse(ends[^1]);
            if (hi < lo) throw new UserErrorException($"--classes {Classes}: range '{part}' runs backwards");
            for (int k = lo; k <= hi; k++) list.Add(k);
        }
        if (list.Count == 0) throw new UserErrorException($"--classes '{Classes}': no class given");
        return [.. list];
    }
}

/// <summary>Where a run is, besides its tensors: the next step and the generator offsets an exact resume needs.</summary>
public sealed record DiffusionState(int Step, ulong DrawOffset, ulong NoiseOffset, int OptimizerSteps, int EmaUpdates, List<LossPoint> History);

/// <summary>
/// Trains a <see cref="Denoiser"/> on Fashion-MNIST (28x28 padded with black to the model's size, pixels in [-1, 1]):
/// each step draws B training images and B steps t uniformly, noises them (x_t = sqrt(abar) x0 + sqrt(1 - abar) eps),
/// and regresses the network output on eps or v by mean squared error; AdamW (no decay) with warm-up then constant
/// rate, gradients clipped, an EMA of the weights. Every SampleEvery steps and at the end: a checkpoint (weights,
/// AdamW moments, EMA, generator offsets, history; one file replaced atomically) and a PNG grid of samples from the
/// EMA weights, one column per class. A run is a function of its configs: host draws (images, t, label drops) come
/// from one generator and the noise from another, both offsets checkpointed, so --resume continues exactly.
/// </summary>
public sealed class DiffusionTrainer
{
    public const string Format = "managedtensor.diffusion.v1";
    public const string FileName = "diffusion.safetensors";
    private const string OptimPrefix = "optim.";

    private readonly FashionMnist _data;
    private readonly int[] _pool; // the training images' indices of the classes that train (all images unless --classes)
    private readonly Device _device;
    private readonly NoiseSchedule _schedule;
    private readonly Generator _draw, _noise;
    private DiffusionState _state;

    private DiffusionTrainer(DiffusionConfig model, DiffusionTrainConfig train, Denoiser net, FashionMnist data, Device device, DiffusionState state)
    {
        (ModelConfig, Config, Model, _data, _device, _state) = (model, train, net, data, device, state);
        var classes = train.ClassList(model.Classes);
        _pool = Enumerable.Range(0, data.Count).Where(i => classes.Contains(data.Labels[i])).ToArray();
        if (_pool.Length == 0) throw new UserErrorException($"--classes {train.Classes}: {data.Source} has no training image of those classes");
        _schedule = new NoiseSchedule(model.Schedule, model.TrainSteps);
        Optimizer = new AdamW(net.NamedParameters(), train.LearningRate, 0.9, 0.999, 1e-8, weightDecay: 0);
        Ema = new Ema(net, train.EmaDecay);
        _draw = new Generator(train.Seed + 1, state.DrawOffset);
        _noise = new Generator(train.Seed + 2, state.NoiseOffset);
    }

    public DiffusionConfig ModelConfig { get; }
    public DiffusionTrainConfig Config { get; }
    public Denoiser Model { get; }
    public AdamW Optimizer { get; }
    public Ema Ema { get; }
    public int Step => _state.Step;
    public IReadOnlyList<LossPoint> History => _state.History;
    public string CheckpointPath => Path.Combine(Config.OutDir, FileName);

    public static string PathIn(string outDir) => Path.Combine(outDir, FileName);

    /// <summary>A fresh run; an existing checkpoint in OutDir is an error unless <paramref name="replace"/>.</summary>
    public static DiffusionTrainer Create(DiffusionConfig model, DiffusionTrainConfig train, Device device, bool replace = false)
    {
        model.Validate();
        train.Validate();
        if (File.Exists(PathIn(train.OutDir)) && !replace)
            throw new UserErrorException($"--out-dir {train.OutDir} holds a run ({FileName}): --resume continues it, --force starts over, or choose another --out-dir");
        AtomicFile.EnsureWritableDirectory(train.OutDir, "--out-dir");
        Denoiser net;
        if (train.Base.Length > 0)
        {
            // Fine-tuning: the base run's model and its EMA weights (what it samples with), then the adapters.
            var baseRun = DiffusionCheckpoint.Load(train.Base);
            if (baseRun.Train.LoraRank > 0) throw new UserErrorException($"--base {train.Base}: a LoRA run; give the run it adapted (its --base {baseRun.Train.Base}) or merge first");
            model = baseRun.Model;
            net = Denoiser.Create(model, new Generator(train.Seed), device);
            baseRun.LoadInto(net, ema: true);
            if (train.LoraRank > 0) DiffusionLora.Attach(net, train, new Generator(train.Seed + 3));
        }
        else net = Denoiser.Create(model, new Generator(train.Seed), device);
        var data = LoadData(train, model);
        return new DiffusionTrainer(model, train, net, data, device, new DiffusionState(0, 0, 0, 0, 0, []));
    }

    private static FashionMnist LoadData(DiffusionTrainConfig train, DiffusionConfig model)
    {
        if (model.ImageSize < FashionMnist.Side || (model.ImageSize - FashionMnist.Side) % 2 != 0)
            throw new UserErrorException($"image size {model.ImageSize}: Fashion-MNIST's 28x28 images are padded evenly, so it must be 28, 30, 32, ...");
        return FashionMnist.Load(train.DataDir, "train", train.Limit);
    }

    /// <summary>Continues the run in <paramref name="outDir"/>; <paramref name="maxSteps"/> may extend it.</summary>
    public static DiffusionTrainer Resume(string outDir, Device device, int? maxSteps = null)
    {
        var ck = DiffusionCheckpoint.Load(outDir);
        var train = ck.Train with { OutDir = outDir, MaxSteps = maxSteps ?? ck.Train.MaxSteps };
        train.Validate();
        var data = LoadData(train, ck.Model);
        var net = ck.CreateDenoiser(device);
        ck.LoadInto(net, stripPrefixes: true);
        var trainer = new DiffusionTrainer(ck.Model, train, net, data, device, ck.State);
        try
        {
            trainer.Optimizer.LoadState(ck.Tensors(OptimPrefix), ck.State.OptimizerSteps, ck.Path);
            trainer.Ema.LoadState(ck.Tensors("ema.", keepPrefix: true), ck.State.EmaUpdates, ck.Path);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
        return trainer;
    }

    /// <summary>Trains to MaxSteps (or until <paramref name="cancel"/>, after which the step reached is checkpointed).</summary>
    public void Run(IImageTrainObserver observer, CancellationToken cancel = default)
    {
        observer.OnStart(_state.Step, Config.MaxSteps);
        var clock = Stopwatch.StartNew();
        int timed = 0;
        while (_state.Step < Config.MaxSteps)
        {
            if (cancel.IsCancellationRequested)
            {
                Save(observer);
                return;
            }
            int step = _state.Step;
            double loss = TrainStep(step);
            _state = _state with { Step = step + 1 };
            timed++;
            if (step % Config.LogInterval == 0 || step + 1 == Config.MaxSteps)
            {
                double ms = clock.Elapsed.TotalMilliseconds / timed;
                _state.History.Add(new LossPoint(step, loss));
                observer.OnStep(step, loss, Optimizer.LearningRate, Config.BatchSize / ms * 1000, ms);
                clock.Restart();
                timed = 0;
            }
            if ((step + 1) % Config.SampleEvery == 0 || step + 1 == Config.MaxSteps)
            {
                Save(observer);
                SampleGrid(observer);
                clock.Restart();
                timed = 0;
            }
        }
    }

    /// <summary>What one training step regresses on: images x0 with their labels, steps t, noise eps, x_t and the target.</summary>
    public sealed record Batch(int[] Index, int[] Labels, int[] T, Tensor X0, Tensor Eps, Tensor Xt, Tensor Target);

    /// <summary>
    /// Draws the next batch from the run's generators: B image indices, B steps t uniform in
    /// 0..T-1 (the sampler's indexing), the images in [-1, 1] padded with black, eps ~ N(0, I), x_t and the target.
    /// </summary>
    public Batch DrawBatch()
    {
        int b = Config.BatchSize, pad = (ModelConfig.ImageSize - FashionMnist.Side) / 2;
        var idx = new int[b];
        var t = new int[b];
        for (int i = 0; i < b; i++) idx[i] = _pool[_draw.NextInt(_pool.Length)];
        for (int i = 0; i < b; i++) t[i] = _draw.NextInt(ModelConfig.TrainSteps);
        var labels = idx.Select(i => (int)_data.Labels[i]).ToArray();
        var x0 = _data.Batch(idx, _device, -1, 1, pad);                         // (B, 1, S, S)
        var eps = Tensor.Randn(x0.Shape, _noise, device: _device);
        var xt = _schedule.AddNoise(x0, eps, t);
        return new Batch(idx, labels, t, x0, eps, xt, _schedule.Target(ModelConfig.PredictionKind, x0, eps, t));
    }

    /// <summary>One optimizer step; returns the batch's mean squared error.</summary>
    public double TrainStep(int step)
    {
        Model.Train();
        Optimizer.LearningRate = Config.LearningRate * Math.Min(1.0, (step + 1.0) / (Config.WarmupSteps + 1.0));
        var (_, labels, t, _, _, xt, target) = DrawBatch();
        var output = Model.Forward(xt, t.Select(v => (double)v).ToArray(), labels, _draw);
        var loss = (output - target).Square().Mean();
        loss.Backward();
        double l = loss.Item();
        double norm = Config.GradClip > 0 ? GradClip.ClipGradNorm(Model.Parameters(), Config.GradClip) : 0;
        if (!double.IsFinite(l) || !double.IsFinite(norm))
        {
            Optimizer.ZeroGrad();
            throw new TrainingDivergedException(step, $"diffusion training diverged at step {step}: loss {l}, gradient norm {norm}; the last checkpoint is kept in {CheckpointPath}; lower --lr ({Config.LearningRate})");
        }
        Optimizer.Step();
        Optimizer.ZeroGrad();
        Ema.Update();
        return l;
    }

    private void Save(IImageTrainObserver observer)
    {
        _state = _state with { DrawOffset = _draw.Offset, NoiseOffset = _noise.Offset, OptimizerSteps = Optimizer.StepCount, EmaUpdates = Ema.Updates };
        var tensors = Model.StateDict().Select(kv => kv)
            .Concat(Optimizer.StateTensors().Select(kv => new KeyValuePair<string, Tensor>(OptimPrefix + kv.Key, kv.Value)))
            .Concat(Ema.StateTensors());
        DiffusionCheckpoint.Save(CheckpointPath, ModelConfig, Config, _state, tensors);
        observer.OnMessage($"step {_state.Step}: saved {CheckpointPath}");
    }

    /// <summary>A grid of samples from the EMA weights: two rows, one column per class (DDIM, the run's cfg), samples_STEP.png.</summary>
    private void SampleGrid(IImageTrainObserver observer)
    {
        int classes = ModelConfig.Classes;
        var labels = Enumerable.Range(0, 2 * classes).Select(i => i % classes).ToArray();
        Ema.Swap();
        try
        {
            var images = Sampler.Sample(Model, labels, new SamplerOptions("ddim", Math.Min(Config.SampleSteps, ModelConfig.TrainSteps), Config.SampleCfg, 0, Config.Seed + 4));
            string png = Path.Combine(Config.OutDir, $"samples_{_state.Step:D6}.png");
            GrayImage.SaveGrid(png, images, classes);
            observer.OnMessage($"step {_state.Step}: samples (EMA weights, DDIM {Config.SampleSteps} steps, cfg {Config.SampleCfg}) in {png}");
        }
        finally
        {
            Ema.Swap();
        }
    }
}
