using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Training;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Whisper;

/// <summary>
/// `mt transcribe train`'s settings. The model is Whisper-shaped but small, and takes <see cref="AudioSeconds"/> of
/// audio instead of 30 s: the generated corpus's clips last 1.5 to 3.7 s, and padding is most of the encoder's work
/// (its cost grows with the input's frames, and cross-attention spread over silence dilutes what the decoder hears).
/// The defaults train in about an hour on a quiet 2-core CPU: a step of 16 clips costs about 1.5 s of CPU time
/// (0.8 s of wall time on two cores), so 4,000 steps. A fifth of a step is the tied output head over Whisper's
/// 51,864 tokens (bench `whisper-train --profile`), kept so that a run is a Hugging Face Whisper checkpoint.
/// Every field is stored in the checkpoint, so changing a default here never changes how an older run resumes.
/// </summary>
public sealed record WhisperTrainConfig
{
    public string Data { get; init; } = "data-speech";
    public string OutDir { get; init; } = "out-whisper";
    public int MaxIters { get; init; } = 4000;
    public int BatchSize { get; init; } = 16;
    public double LearningRate { get; init; } = 1e-3;
    public double MinLr { get; init; } = 1e-4;
    public int WarmupIters { get; init; } = 200;
    public int EvalInterval { get; init; } = 250;
    public int EvalClips { get; init; } = 32;
    public double WeightDecay { get; init; } = 0.1;
    public double GradClip { get; init; } = 1.0;
    public ulong Seed { get; init; } = 1337;
    public int DModel { get; init; } = 192;
    public int Layers { get; init; } = 3;
    public int Heads { get; init; } = 4;
    public double AudioSeconds { get; init; } = 4;
    public int MaxTokens { get; init; } = 64;

    /// <summary>Mel frames of the model's input (10 ms each), even so that conv2 halves them exactly.</summary>
    public int Frames => 2 * (int)Math.Round(AudioSeconds * 50);

    public WhisperConfig Model() => new(80, DModel, Layers, Heads, 4 * DModel, Layers, Heads, 4 * DModel, Frames / 2, MaxTokens, WhisperTokenizer.EnglishVocabSize);

    public void Validate()
    {
        void Need(bool ok, string message) { if (!ok) throw new UserErrorException(message); }
        Need(MaxIters >= 1, $"--max-iters {MaxIters} must be >= 1");
        Need(BatchSize >= 1, $"--batch-size {BatchSize} must be >= 1");
        Need(LearningRate > 0 && double.IsFinite(LearningRate), $"--lr {LearningRate} must be a positive number");
        Need(MinLr >= 0 && MinLr <= LearningRate, $"--min-lr {MinLr} must be in [0, --lr]");
        Need(WarmupIters >= 0, $"--warmup-iters {WarmupIters} must be >= 0");
        Need(EvalInterval >= 1, $"--eval-interval {EvalInterval} must be >= 1");
        Need(EvalClips >= 1, $"--eval-clips {EvalClips} must be >= 1");
        Need(WeightDecay >= 0 && GradClip >= 0, $"--weight-decay {WeightDecay} and --grad-clip {GradClip} must be >= 0");
        Need(DModel >= 4 && DModel % Heads == 0 && DModel % 2 == 0, $"--d-model {DModel} must be even and a multiple of --heads {Heads}");
        Need(Layers >= 1 && Heads >= 1, $"--layers {Layers} and --heads {Heads} must be >= 1");
        Need(AudioSeconds > 0 && AudioSeconds <= 30, $"--audio-seconds {AudioSeconds} must be in (0, 30]");
        Need(MaxTokens >= 4 && MaxTokens <= 448, $"--max-tokens {MaxTokens} must be in [4, 448]");
    }
}

/// <summary>
/// Trains a small Whisper on a speech corpus (<see cref="SpeechCorpus"/>) the way the project's language models train
/// (<see cref="GptTrainer"/>): random batches of clips from a seeded generator, AdamW with warm-up and cosine decay,
/// gradient clipping, an evaluation of both splits every eval interval (the first --eval-clips clips of each: the
/// test split's voices are held out), a checkpoint after each evaluation.
/// The loss is teacher-forced cross-entropy of each transcript token given the audio and the tokens before it (the
/// prompt's own tokens are not targets; padding is ignored). A run is a function of its config: a batch depends only
/// on the batch generator's offset, which the checkpoint stores with the weights, AdamW's moments and the history,
/// so --resume continues exactly. OUT/ckpt.safetensors holds all of that; OUT/config.json and OUT/model.safetensors are
/// the weights as a Hugging Face Whisper directory, which `mt transcribe --model OUT` reads like any other.
/// </summary>
public sealed class WhisperTrainer
{
    public const string CheckpointFile = "ckpt.safetensors", Format = "managedtensor.whisper.v1";
    private const string OptimPrefix = "optim.";
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };

    private readonly CosineSchedule _schedule;
    private readonly Generator _batches;
    private readonly List<SpeechClip> _train, _test;
    private TrainState _state;

    public WhisperTrainConfig Config { get; }
    public WhisperModel Model { get; }
    public WhisperTokenizer Tokenizer { get; }
    public AdamW Optimizer { get; }
    public IReadOnlyList<LossPoint> History => _state.History;
    public int Iter => _state.Iter;
    public int TrainClips => _train.Count;
    public int TestClips => _test.Count;

    private WhisperTrainer(WhisperTrainConfig cfg, Device device, TrainState state)
    {
        Config = cfg;
        Tokenizer = WhisperTokenizer.EnglishFromDataFolder();
        _train = SpeechCorpus.Read(cfg.Data, "train");
        _test = SpeechCorpus.Read(cfg.Data, "test");
        Model = new WhisperModel(cfg.Model(), new Generator(cfg.Seed), device);
        Optimizer = new AdamW(Model.NamedParameters(), cfg.LearningRate, 0.9, 0.98, 1e-8, cfg.WeightDecay);
        _schedule = new CosineSchedule(cfg.LearningRate, cfg.MinLr, cfg.WarmupIters, cfg.MaxIters);
        _state = state;
        _batches = new Generator(cfg.Seed + 1, state.BatchOffset);
    }

    /// <summary>A new run in <see cref="WhisperTrainConfig.OutDir"/>, which must not hold one unless <paramref name="force"/>.</summary>
    public static WhisperTrainer Create(WhisperTrainConfig cfg, Device device, bool force = false)
    {
        cfg.Validate();
        string ckpt = Path.Combine(cfg.OutDir, CheckpointFile);
        if (File.Exists(ckpt) && !force)
            throw new UserErrorException($"--out-dir {cfg.OutDir} holds a run ({CheckpointFile}): --resume continues it, --force starts over, or choose another --out-dir");
        AtomicFile.EnsureWritableDirectory(cfg.OutDir, "--out-dir");
        return new WhisperTrainer(cfg, device, new TrainState());
    }

    /// <summary>Continues the run in <paramref name="outDir"/>; only the iteration count may change.</summary>
    public static WhisperTrainer Resume(string outDir, Device device, int? maxIters = null)
    {
        string path = Path.Combine(outDir, CheckpointFile);
        if (!File.Exists(path)) throw new UserErrorException($"--resume: {path} does not exist");
        using var file = SafeTensors.Open(path);
        if (!file.Metadata.TryGetValue("format", out var format) || format != Format)
            throw new UserErrorException($"{path}: not a `mt transcribe train` checkpoint (format '{format}', expected '{Format}')");
        var cfg = Read<WhisperTrainConfig>(file, "train_config") with { OutDir = outDir };
        if (maxIters is int m) cfg = cfg with { MaxIters = m };
        cfg.Validate();
        var state = Read<TrainState>(file, "train_state");
        state.Validate(path);
        var t = new WhisperTrainer(cfg, device, state);
        var all = file.LoadAll();
        t.Model.LoadStateDict(all.Where(kv => !kv.Key.StartsWith(OptimPrefix, StringComparison.Ordinal)).ToDictionary(), source: path);
        t.Optimizer.LoadState(all.Where(kv => kv.Key.StartsWith(OptimPrefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[OptimPrefix.Length..], kv => kv.Value), state.OptimizerSteps, path);
        return t;
    }

    private static T Read<T>(SafeTensorsFile file, string key)
    {
        try
        {
            return file.Metadata.TryGetValue(key, out var json) ? JsonSerializer.Deserialize<T>(json, Json) ?? throw new JsonException("null")
                : throw new UserErrorException($"{file.Path}: metadata '{key}' is missing");
        }
        catch (JsonException e) { throw new UserErrorException($"{file.Path}: metadata '{key}' is not valid: {e.Message}"); }
    }

    /// <summary>
    /// Trains to <see cref="WhisperTrainConfig.MaxIters"/>: <paramref name="onStep"/> gets (iter, loss, lr, ms),
    /// <paramref name="onEval"/> (iter, train loss, test loss, test loss with mismatched audio: see <see cref="EvalLoss"/>).
    /// A cancelled run checkpoints the step it reached.
    /// </summary>
    public void Run(Action<int, double, double, double> onStep, Action<int, double, double, double> onEval, CancellationToken cancel = default)
    {
        for (int it = _state.Iter; ; it++)
        {
            bool end = it == Config.MaxIters || cancel.IsCancellationRequested;
            if ((it % Config.EvalInterval == 0 || end) && _state.LastEvalIter != it)
            {
                double train = EvalLoss(_train), test = EvalLoss(_test), mismatched = EvalLoss(_test, mismatchAudio: true);
                bool best = test < _state.BestValLoss;
                _state = _state with
                {
                    Iter = it,
                    LastEvalIter = it,
                    BestValLoss = best ? test : _state.BestValLoss,
                    BestValIter = best ? it : _state.BestValIter,
                    History = [.. _state.History, new LossPoint(it, train, test)],
                };
                onEval(it, train, test, mismatched);
                Save();
            }
            if (end) return;
            var sw = Stopwatch.StartNew();
            double loss = Step(it);
            _state = _state with { Iter = it + 1, BatchOffset = _batches.Offset, OptimizerSteps = Optimizer.StepCount, History = [.. _state.History, new LossPoint(it, loss)] };
            onStep(it, loss, Optimizer.LearningRate, sw.Elapsed.TotalMilliseconds);
        }
    }

    /// <summary>One AdamW step on a batch of <see cref="WhisperTrainConfig.BatchSize"/> random training clips; returns its loss.</summary>
    public double Step(int it)
    {
        var rows = Enumerable.Range(0, Config.BatchSize).Select(_ => _train[_batches.NextInt(_train.Count)]).ToList();
        Model.Train();
        Optimizer.LearningRate = _schedule.LearningRate(it);
        Optimizer.ZeroGrad();
        var loss = BatchLoss(rows);
        double value = loss.Item();
        if (!double.IsFinite(value)) throw new TrainingDivergedException(it, $"step {it}: the loss is {value}; lower --lr or raise --warmup-iters");
        loss.Backward();
        if (Config.GradClip > 0) GradClip.ClipGradNorm(Model.Parameters(), Config.GradClip);
        Optimizer.Step();
        return value;
    }

    /// <summary>
    /// The mean loss over the first <see cref="WhisperTrainConfig.EvalClips"/> clips of a split (the same ones at every
    /// evaluation). With <paramref name="mismatchAudio"/> each transcript is scored against the next clip's audio: a model
    /// that reads the audio does much worse then (the gap is what the audio tells it), while a decoder that has become a
    /// language model of the transcripts and ignores the audio scores the same either way.
    /// </summary>
    private double EvalLoss(List<SpeechClip> split, bool mismatchAudio = false)
    {
        Model.Eval();
        using var noGrad = GradMode.NoGrad();
        var clips = split.Take(Config.EvalClips).ToList();
        var audio = mismatchAudio ? [.. clips.Skip(1), clips[0]] : clips;
        double sum = 0;
        int batches = 0;
        for (int i = 0; i < clips.Count; i += Config.BatchSize, batches++)
            sum += BatchLoss(clips.Skip(i).Take(Config.BatchSize).ToList(), audio.Skip(i).Take(Config.BatchSize).ToList()).Item();
        return sum / batches;
    }

    /// <summary>
    /// Teacher-forced cross-entropy of a batch: inputs tokens[..^1], targets tokens[1..], prompt targets and padding ignored.
    /// Row b's transcript is clips[b]'s, its audio audio[b]'s (the same clip, unless an evaluation mismatches them).
    /// </summary>
    private Tensor BatchLoss(List<SpeechClip> clips, List<SpeechClip>? audio = null)
    {
        var c = Config.Model();
        var examples = clips.Select(clip => SpeechCorpus.Example(clip, Tokenizer, c.NMels, c.InputFrames, Config.MaxTokens)).ToList();
        if (audio is not null && !ReferenceEquals(audio, clips))
            examples = examples.Select((e, b) => (audio[b] == clips[b] ? e.Mel : SpeechCorpus.Example(audio[b], Tokenizer, c.NMels, c.InputFrames, Config.MaxTokens).Mel, e.Tokens)).ToList();
        int t = examples.Max(e => e.Tokens.Length) - 1, promptTargets = Tokenizer.Prompt(null, false).Length - 1;
        var input = new long[clips.Count * t];
        var target = new long[clips.Count * t];
        for (int b = 0; b < clips.Count; b++)
            for (int i = 0; i < t; i++)
            {
                var tok = examples[b].Tokens;
                input[b * t + i] = i < tok.Length - 1 ? tok[i] : Tokenizer.EndOfText;
                target[b * t + i] = i < promptTargets || i >= tok.Length - 1 ? -100 : tok[i + 1];
            }
        var mel = Tensor.Stack(examples.Select(e => e.Mel).ToArray()).To(Model.Device);       // (B, n_mels, frames)
        return Model.Loss(mel, Tensor.FromArray(input, [clips.Count, t], Model.Device), Tensor.FromArray(target, [clips.Count, t], Model.Device));
    }

    /// <summary>OUT/ckpt.safetensors (everything a resume needs), then the weights as a Hugging Face directory.</summary>
    public void Save()
    {
        var tensors = Model.StateDict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value))
            .Concat(Optimizer.StateTensors().Select(kv => new KeyValuePair<string, Tensor>(OptimPrefix + kv.Key, kv.Value)));
        SafeTensors.Save(Path.Combine(Config.OutDir, CheckpointFile), tensors, new Dictionary<string, string>
        {
            ["format"] = Format,
            ["train_config"] = JsonSerializer.Serialize(Config, Json),
            ["train_state"] = JsonSerializer.Serialize(_state, Json),
        });
        SafeTensors.Save(Path.Combine(Config.OutDir, "model.safetensors"), Model.StateDict());
        var m = Model.Config;
        var hf = new Dictionary<string, object>
        {
            ["architectures"] = new[] { HfWhisper.Architecture }, ["model_type"] = "whisper",
            ["d_model"] = m.DModel, ["encoder_layers"] = m.EncoderLayers, ["decoder_layers"] = m.DecoderLayers,
            ["encoder_attention_heads"] = m.EncoderHeads, ["decoder_attention_heads"] = m.DecoderHeads,
            ["encoder_ffn_dim"] = m.EncoderFfn, ["decoder_ffn_dim"] = m.DecoderFfn, ["num_mel_bins"] = m.NMels,
            ["max_source_positions"] = m.MaxSourcePositions, ["max_target_positions"] = m.MaxTargetPositions,
            ["vocab_size"] = m.VocabSize, ["activation_function"] = "gelu", ["scale_embedding"] = false,
            ["decoder_start_token_id"] = Tokenizer.StartOfTranscript, ["eos_token_id"] = Tokenizer.EndOfText,
            ["pad_token_id"] = Tokenizer.EndOfText, ["bos_token_id"] = Tokenizer.EndOfText, ["tie_word_embeddings"] = true,
        };
        AtomicFile.WriteAllText(Path.Combine(Config.OutDir, "config.json"), JsonSerializer.Serialize(hf, new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
