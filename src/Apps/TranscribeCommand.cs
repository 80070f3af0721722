using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using ManagedTensor.Models.Whisper;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt transcribe FILE.wav... [--model DIR] [--beam N] [--timestamps]`: speech to text with a Whisper model (a Hugging
/// Face WhisperForConditionalGeneration directory: config.json, model.safetensors, tokenizer.json or vocab.json +
/// merges.txt). Prints each file's text, or its segments with start and end times.
/// `mt transcribe train` trains a small Whisper on a synthesized corpus (scripts/make_speech_corpus.sh) and
/// `mt transcribe wer` measures a model's word error rate on a corpus split.
/// </summary>
public static class TranscribeCommand
{
    public static Command Create(TextWriter output)
    {
        var files = new Argument<string[]>("FILE") { Description = "WAV files (PCM 8/16/24/32-bit or float, any rate and channel count; converted to 16 kHz mono)", Arity = ArgumentArity.OneOrMore };
        var model = new Option<string>("--model", "-m") { Description = "a Hugging Face Whisper directory (or its config.json)", Required = true };
        var beam = new Option<int>("--beam") { Description = "beam width; 1 is greedy decoding", DefaultValueFactory = _ => 1 }.AtLeast(1);
        var timestamps = new Option<bool>("--timestamps") { Description = "predict timestamps and print segments with their start and end times" };
        var language = new Option<string>("--language") { Description = "language code of a multilingual model (en, de, fr, ...); English-only models ignore it", DefaultValueFactory = _ => "en" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "most tokens decoded per 30 s chunk", DefaultValueFactory = _ => 224 }.AtLeast(1);
        var device = Cli.DeviceOption("cpu");
        var cmd = new Command("transcribe", "speech to text with a Whisper model") { files, model, beam, timestamps, language, maxTokens, device };
        cmd.Subcommands.Add(TrainCommand(output));
        cmd.Subcommands.Add(WerCommand(output));
        cmd.SetAction(p =>
        {
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            var transcriber = Transcriber.Open(p.GetValue(model)!, dev);
            var options = new DecodeOptions(p.GetValue(beam), p.GetValue(timestamps), p.GetValue(language), p.GetValue(maxTokens));
            foreach (string file in p.GetValue(files)!)
            {
                var t = transcriber.TranscribeFile(file, options);
                if (!options.Timestamps)
                {
                    output.WriteLine($"{file}: {t.Text}");
                    continue;
                }
                output.WriteLine($"{file}:");
                foreach (var s in t.Segments) output.WriteLine($"[{Time(s.Start)} --> {Time(s.End)}] {s.Text}");
            }
            return 0;
        });
        return cmd;
    }

    private static Command TrainCommand(TextWriter output)
    {
        var d = new WhisperTrainConfig();
        var data = new Option<string>("--data") { Description = "corpus folder with train.tsv and test.tsv (scripts/make_speech_corpus.sh)", DefaultValueFactory = _ => d.Data };
        var outDir = new Option<string>("--out-dir") { Description = "where checkpoints, the model (config.json, model.safetensors) and loss.png go", DefaultValueFactory = _ => d.OutDir };
        var maxIters = new Option<int>("--max-iters") { Description = "training steps in all", DefaultValueFactory = _ => d.MaxIters }.AtLeast(1);
        var batch = new Option<int>("--batch-size") { Description = "clips per step", DefaultValueFactory = _ => d.BatchSize }.AtLeast(1);
        var lr = new Option<double>("--lr") { Description = "peak learning rate (AdamW; linear warm-up, cosine decay to a tenth)", DefaultValueFactory = _ => d.LearningRate };
        var warmup = new Option<int>("--warmup-iters") { Description = "steps of linear learning-rate warm-up", DefaultValueFactory = _ => d.WarmupIters }.AtLeast(0);
        var evalInterval = new Option<int>("--eval-interval") { Description = "steps between evaluations and checkpoints", DefaultValueFactory = _ => d.EvalInterval }.AtLeast(1);
        var evalClips = new Option<int>("--eval-clips") { Description = "clips of each split in an evaluation", DefaultValueFactory = _ => d.EvalClips }.AtLeast(1);
        var dModel = new Option<int>("--d-model") { Description = "width of the model (d_model; the MLPs are 4 times wider)", DefaultValueFactory = _ => d.DModel }.AtLeast(4);
        var layers = new Option<int>("--layers") { Description = "encoder layers (and as many decoder layers)", DefaultValueFactory = _ => d.Layers }.AtLeast(1);
        var heads = new Option<int>("--heads") { Description = "attention heads per layer", DefaultValueFactory = _ => d.Heads }.AtLeast(1);
        var seconds = new Option<double>("--audio-seconds") { Description = "the model's input length (clips are padded to it)", DefaultValueFactory = _ => d.AudioSeconds };
        var seed = new Option<int>("--seed") { Description = "seed of the initial weights and of the batches", DefaultValueFactory = _ => (int)d.Seed }.AtLeast(0);
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out-dir (only --max-iters may change)" };
        var force = new Option<bool>("--force") { Description = "replace a run already in --out-dir" };
        var device = Cli.DeviceOption("cpu");
        var cmd = new Command("train", "train a small Whisper on a synthesized speech corpus")
            { data, outDir, maxIters, batch, lr, warmup, evalInterval, evalClips, dModel, layers, heads, seconds, seed, resume, force, device };
        cmd.SetAction(p =>
        {
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            var trainer = p.GetValue(resume)
                ? WhisperTrainer.Resume(p.GetValue(outDir)!, dev, p.GetResult(maxIters) is { Implicit: false } ? p.GetValue(maxIters) : null)
                : WhisperTrainer.Create(new WhisperTrainConfig
                {
                    Data = p.GetValue(data)!, OutDir = p.GetValue(outDir)!, MaxIters = p.GetValue(maxIters), BatchSize = p.GetValue(batch),
                    LearningRate = p.GetValue(lr), MinLr = p.GetValue(lr) / 10, WarmupIters = p.GetValue(warmup), EvalInterval = p.GetValue(evalInterval), EvalClips = p.GetValue(evalClips),
                    DModel = p.GetValue(dModel), Layers = p.GetValue(layers), Heads = p.GetValue(heads), AudioSeconds = p.GetValue(seconds), Seed = (ulong)p.GetValue(seed),
                }, dev, p.GetValue(force));
            var c = trainer.Config;
            output.WriteLine($"data: {c.Data}, {trainer.TrainClips} train / {trainer.TestClips} test clips; model: {c.Layers} + {c.Layers} layers, {c.DModel} wide, {c.AudioSeconds} s input: {trainer.Model.ParameterCount() / 1e6:F2}M parameters on {trainer.Model.Device}");
            if (trainer.Iter > 0) output.WriteLine($"resuming from {c.OutDir} at iteration {trainer.Iter}");
            using var stop = new CancellationTokenSource();
            void OnSignal(PosixSignalContext ctx)
            {
                if (stop.IsCancellationRequested) return;
                ctx.Cancel = true;
                output.WriteLine("stopping after this step to save a checkpoint");
                stop.Cancel();
            }
            using (PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal))
                trainer.Run(
                    (it, loss, rate, ms) => output.WriteLine($"iter {it + 1}/{c.MaxIters}: loss {loss:F4}, lr {rate:0.00e+00}, {ms:F1} ms/iter"),
                    (it, train, test, mismatched) => output.WriteLine($"step {it}: train loss {train:F4}, test loss {test:F4}, with mismatched audio {mismatched:F4} (saved {Path.Combine(c.OutDir, WhisperTrainer.CheckpointFile)})"),
                    stop.Token);
            string png = Path.Combine(c.OutDir, "loss.png");
            LossPlot.Save(trainer.History, png, $"whisper {c.Layers}+{c.Layers}x{c.DModel} on {Path.GetFileName(Path.GetFullPath(c.Data))}");
            output.WriteLine($"loss curve: {png}");
            if (stop.IsCancellationRequested) output.WriteLine($"resume with: mt transcribe train --resume --out-dir {c.OutDir}");
            return 0;
        });
        return cmd;
    }

    private static Command WerCommand(TextWriter output)
    {
        var model = new Option<string>("--model", "-m") { Description = "a Whisper directory (e.g. out-whisper)", Required = true };
        var data = new Option<string>("--data") { Description = "corpus folder (scripts/make_speech_corpus.sh)", DefaultValueFactory = _ => "data-speech" };
        var split = new Option<string>("--split") { Description = "train or test", DefaultValueFactory = _ => "test" };
        var limit = new Option<int>("--limit") { Description = "at most this many clips (0: all)", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var beam = new Option<int>("--beam") { Description = "beam width; 1 is greedy decoding", DefaultValueFactory = _ => 1 }.AtLeast(1);
        var maxTokens = new Option<int>("--max-tokens") { Description = "most tokens decoded per clip", DefaultValueFactory = _ => 224 }.AtLeast(1);
        var device = Cli.DeviceOption("cpu");
        var cmd = new Command("wer", "word error rate of a Whisper model on a corpus split") { model, data, split, limit, beam, maxTokens, device };
        cmd.SetAction(p =>
        {
            var transcriber = Transcriber.Open(p.GetValue(model)!, Cli.ParseDevice(p.GetValue(device)!));
            var clips = SpeechCorpus.Read(p.GetValue(data)!, p.GetValue(split)!);
            if (p.GetValue(limit) > 0) clips = clips.Take(p.GetValue(limit)).ToList();
            var total = default(WordErrors);
            foreach (var clip in clips)
            {
                string text = transcriber.TranscribeFile(clip.Path, new DecodeOptions(Beam: p.GetValue(beam), MaxTokens: p.GetValue(maxTokens))).Text;
                var e = Wer.Count(clip.Text, text);
                total += e;
                output.WriteLine($"{Path.GetFileName(clip.Path)} [{clip.Voice}] WER {e.Rate:P1}: {text}");
            }
            output.WriteLine($"WER {total.Rate:P2} over {clips.Count} clips, {total.ReferenceWords} words ({total.Substitutions} substitutions, {total.Deletions} deletions, {total.Insertions} insertions)");
            return 0;
        });
        return cmd;
    }

    /// <summary>mm:ss.fff, as whisper prints segment times.</summary>
    public static string Time(double seconds) =>
        $"{(int)(seconds / 60):00}:{(seconds % 60).ToString("00.000", CultureInfo.InvariantCulture)}";
}
