using System.Diagnostics;
using ManagedTensor.Models.Data;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Training;

/// <summary>What the training loop reports; the app renders it (a live progress bar or plain lines).</summary>
public interface ITrainingObserver
{
    void OnStart(GPT model, TrainConfig config, int startIter, ITokenizer tokenizer, TextDataset data);
    void OnStep(int iter, double loss, double lr, double tokensPerSecond, double msPerIter);
    void OnEval(int iter, double trainLoss, double valLoss);
    void OnCheckpoint(int iter, string path);
}

/// <summary>
/// nanoGPT's train.py as a class: random batches from a 90/10 split, AdamW with a cosine schedule,
/// gradient accumulation and clipping, an evaluation of both splits every eval interval, and a
/// checkpoint after each evaluation and at the end. A run is a pure function of its <see cref="TrainConfig"/>:
/// batches, dropout masks and evaluation batches each come from their own seeded generator, and every
/// generator offset is in the checkpoint, so a resumed run continues with the same losses it would have
/// had without the interruption.
/// </summary>
public sealed class GptTrainer
{
    private readonly TrainConfig _cfg;
    private readonly Device _device;
    private readonly CosineSchedule _schedule;
    private readonly Generator _batchGen, _evalGen;
    private TrainState _state;

    public GPT Model { get; }
    public AdamW Optimizer { get; }
    public ITokenizer Tokenizer { get; }
    public TextDataset Data { get; }
    public IReadOnlyList<LossPoint> History => _state.History;
    public double BestValLoss => _state.BestValLoss;

    private GptTrainer(TrainConfig cfg, Device device, ITokenizer tokenizer, TextDataset data, GPT model, TrainState state)
    {
        _cfg = cfg;
        _device = device;
        Tokenizer = tokenizer;
        Data = data;
        Model = model;
        _state = state;
        using (DeviceMemory.Category(MemoryCategory.OptimizerState))
            Optimizer = new AdamW(model.NamedParameters(), cfg.LearningRate, cfg.Beta1, cfg.Beta2, 1e-8, cfg.WeightDecay);
        _schedule = new CosineSchedule(cfg.LearningRate, cfg.MinLr, cfg.WarmupIters, cfg.LrDecayIters);
        _batchGen = new Generator(cfg.Seed + 1, state.BatchOffset);
        _evalGen = new Generator(cfg.Seed + 3, state.EvalOffset);
    }

    /// <summary>A fresh run: reads and tokenizes the text, builds the model from the seed.</summary>
    public static GptTrainer Create(TrainConfig cfg, Device device)
    {
        cfg.Validate();
        string text = File.ReadAllText(DataFiles.Find(cfg.DataPath));
        var tokenizer = ManagedTensor.Models.Data.Tokenizers.Create(cfg.Tokenizer, text);
        var data = TextDataset.FromText(text, tokenizer);
        GPT model;
        using (DeviceMemory.Category(MemoryCategory.Weights))
            model = new GPT(cfg.ModelConfig(tokenizer.VocabSize), new Generator(cfg.Seed), device, cfg.Seed + 2);
        return new GptTrainer(cfg, device, tokenizer, data, model, new TrainState());
    }

    /// <summary>
    /// Continues the run saved in <paramref name="outDir"/>: same config (except <paramref name="maxIters"/>
    /// when given), weights, optimizer moments, generator offsets and history.
    /// </summary>
    public static GptTrainer Resume(string outDir, Device device, int? maxIters = null)
    {
        using var ckpt = GptCheckpoint.Load(outDir);
        var cfg = ckpt.Train with { OutDir = outDir, MaxIters = maxIters ?? ckpt.Train.MaxIters };
        string text = File.ReadAllText(DataFiles.Find(cfg.DataPath));
        var data = TextDataset.FromText(text, ckpt.Tokenizer);
        GPT model;
        using (DeviceMemory.Category(MemoryCategory.Weights)) model = ckpt.CreateModel(device);
        var trainer = new GptTrainer(cfg, device, ckpt.Tokenizer, data, model, ckpt.State);
        trainer.Optimizer.LoadState(ckpt.OptimizerTensors(), ckpt.State.OptimizerSteps, ckpt.File.Path);
        return trainer;
    }

    public int Iter => _state.Iter;
    public TrainConfig Config => _cfg;

    /// <summary>Trains from the current iteration up to MaxIters, evaluating and checkpointing on the way.</summary>
    public void Run(ITrainingObserver observer, CancellationToken cancel = default)
    {
        observer.OnStart(Model, _cfg, _state.Iter, Tokenizer, Data);
        var clock = Stopwatch.StartNew();
        int tokensPerIter = _cfg.BatchSize * _cfg.BlockSize * _cfg.GradAccumSteps;
        int stepsTimed = 0; // steps since the clock was last restarted
        while (true)
        {
            int it = _state.Iter;
            if (it % _cfg.EvalInterval == 0 && _state.LastEvalIter != it || it == _cfg.MaxIters && _state.LastEvalIter != it)
            {
                var (train, val) = EstimateLoss();
                _state = _state with { LastEvalIter = it, BestValLoss = Math.Min(_state.BestValLoss, val) };
                _state.History.Add(new LossPoint(it, train, val));
                observer.OnEval(it, train, val);
                SaveCheckpoint();
                observer.OnCheckpoint(it, GptCheckpoint.PathIn(_cfg.OutDir));
                clock.Restart(); // do not count evaluation in the step time
                stepsTimed = 0;
            }
            if (it >= _cfg.MaxIters || cancel.IsCancellationRequested) break;

            double loss = TrainStep(it);
            double lr = Optimizer.LearningRate;
            _state = _state with { Iter = it + 1 };
            stepsTimed++;
            if (it % _cfg.LogInterval == 0 || it + 1 == _cfg.MaxIters)
            {
                double ms = clock.Elapsed.TotalMilliseconds / stepsTimed;
                _state.History.Add(new LossPoint(it, loss));
                observer.OnStep(it, loss, lr, tokensPerIter / ms * 1000, ms);
                clock.Restart();
                stepsTimed = 0;
            }
        }
    }

    /// <summary>
    /// Iteration <paramref name="it"/> of train.py's loop: the learning rate from the schedule, then one
    /// optimizer step over GradAccumSteps micro-batches (clipped, AdamW); returns the mean micro-batch
    /// loss. The micro-batches are random training batches unless <paramref name="nextBatch"/> gives them
    /// (the trajectory test feeds PyTorch's). On a GPU everything the step allocates (batch, activations,
    /// gradients) is freed when it ends (a memory scope), so after the first step the caching allocator
    /// serves every request from its cache.
    /// </summary>
    public double TrainStep(int it, Func<(Tensor X, Tensor Y)>? nextBatch = null)
    {
        using var scope = DeviceMemory.Scope();
        Optimizer.LearningRate = _schedule.LearningRate(it);
        Model.Train();
        double total = 0;
        for (int micro = 0; micro < _cfg.GradAccumSteps; micro++)
        {
            var (x, y) = nextBatch is null ? Batch(Split.Train, _batchGen) : nextBatch();
            var loss = Model.Forward(x, y).Loss!;
            // Gradients add up across backward calls; scaling each micro-batch makes the sum a mean.
            (_cfg.GradAccumSteps == 1 ? loss : loss.MulScalar(1.0 / _cfg.GradAccumSteps)).Backward();
            total += loss.Item();
        }
        foreach (var p in Model.Parameters())
            if (p.Grad is { } g) DeviceMemory.Tag(g, MemoryCategory.Grads);
        if (_cfg.GradClip > 0) GradClip.ClipGradNorm(Model.Parameters(), _cfg.GradClip);
        Optimizer.Step();
        Optimizer.ZeroGrad();
        return total / _cfg.GradAccumSteps;
    }

    /// <summary>nanoGPT's estimate_loss: the mean loss of EvalIters batches of each split, dropout off.</summary>
    public (double Train, double Val) EstimateLoss()
    {
        Model.Eval();
        double Mean(Split split)
        {
            double sum = 0;
            for (int k = 0; k < _cfg.EvalIters; k++)
            {
                using var scope = DeviceMemory.Scope();
                var (x, y) = Batch(split, _evalGen);
                using (GradMode.NoGrad()) sum += Model.Forward(x, y).Loss!.Item();
            }
            return sum / _cfg.EvalIters;
        }
        var result = (Mean(Split.Train), Mean(Split.Val));
        Model.Train();
        return result;
    }

    private (Tensor X, Tensor Y) Batch(Split split, Generator gen)
    {
        var (x, y) = Data.GetBatch(split, _cfg.BatchSize, _cfg.BlockSize, gen);
        return (x.To(_device), y.To(_device));
    }

    private void SaveCheckpoint()
    {
        _state = _state with
        {
            BatchOffset = _batchGen.Offset,
            EvalOffset = _evalGen.Offset,
            DropoutOffset = Model.DropoutGenerator.Offset,
            OptimizerSteps = Optimizer.StepCount,
        };
        GptCheckpoint.Save(_cfg.OutDir, Model, Optimizer, _cfg, _state, Tokenizer);
    }
}
