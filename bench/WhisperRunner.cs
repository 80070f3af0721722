using ManagedTensor.Models.Whisper;
using ManagedTensor.Optim;

namespace ManagedTensor.Bench;

/// <summary>
/// `whisper --mode encode|train [--batch N] [--tokens T] [sizes] [--iters N] [--warmup N] [--profile]`: our side of
/// bench/whisper_vs_torch.sh, the `mt transcribe train` model on the CPU. Its sizes default to
/// <see cref="WhisperTrainConfig"/>'s (so they follow that config) and can be given: --d-model, --layers (encoder and
/// decoder each), --heads, --frames (mel frames in: 100 per second of audio), --max-tokens, --vocab;
/// `--print-config` prints them as those arguments, which the script hands to bench/whisper_torch.py.
///   encode: the encoder alone, eval mode, no gradients, on (B, 80, frames) seeded noise; batch 1 by default.
///   train:  one step as <see cref="WhisperTrainer.Step"/> takes it, batch 8: teacher-forced cross-entropy of T tokens
///           (T = 32 by default, a typical padded transcript with its prompt; seeded random ids, the first target
///           ignored as the prompt's are), backward, gradient clipping at 1.0, AdamW (lr 1e-3, betas 0.9/0.98, decay
///           0.1 on weights of rank 2 or more).
/// Prints one line: params (checked equal to PyTorch's by the script), ms_per_iter, cpu_ms_per_iter, peak_rss_mb.
/// </summary>
public static class WhisperRunner
{
    public static void Run(string[] args)
    {
        var d = new WhisperTrainConfig();
        string mode = "encode";
        int batch = -1, tokens = 32, iters = 4, warmup = 1;
        int dModel = d.DModel, layers = d.Layers, heads = d.Heads, frames = d.Frames, maxTokens = d.MaxTokens, vocab = d.Model().VocabSize;
        bool profile = false, printConfig = false;
        for (int i = 0; i < args.Length; i++)
        {
            int Next() => int.Parse(args[++i]);
            switch (args[i])
            {
                case "--mode": mode = args[++i]; break;
                case "--batch": batch = Next(); break;
                case "--tokens": tokens = Next(); break;
                case "--d-model": dModel = Next(); break;
                case "--layers": layers = Next(); break;
                case "--heads": heads = Next(); break;
                case "--frames": frames = Next(); break;
                case "--max-tokens": maxTokens = Next(); break;
                case "--vocab": vocab = Next(); break;
                case "--iters": iters = Next(); break;
                case "--warmup": warmup = Next(); break;
                case "--profile": profile = true; break;
                case "--print-config": printConfig = true; break;
                default: throw new ArgumentException($"whisper: unknown argument '{args[i]}' (expected --mode encode|train, --batch N, --tokens T, --d-model, --layers, --heads, --frames, --max-tokens, --vocab, --iters N, --warmup N, --profile, --print-config)");
            }
        }
        if (printConfig)
        {
            Console.WriteLine($"--d-model {dModel} --layers {layers} --heads {heads} --frames {frames} --max-tokens {maxTokens} --vocab {vocab}");
            return;
        }
        if (mode is not ("encode" or "train")) throw new ArgumentException($"whisper: --mode {mode}: expected encode or train");
        if (batch < 0) batch = mode == "encode" ? 1 : d.BatchSize;
        if (frames < 2 || frames % 2 != 0) throw new ArgumentException($"whisper: --frames {frames} must be even and >= 2 (conv2 halves them)");
        if (tokens < 2 || tokens > maxTokens) throw new ArgumentException($"whisper: --tokens {tokens} must be in [2, --max-tokens {maxTokens}]");

        var config = new WhisperConfig(80, dModel, layers, heads, 4 * dModel, layers, heads, 4 * dModel, frames / 2, maxTokens, vocab);
        var model = new WhisperModel(config, new Generator(0), Device.Cpu);
        var data = new Generator(1);
        var mel = Tensor.Randn([batch, config.NMels, frames], data);                          // (B, 80, F)
        var profiler = profile ? new OpProfiler(Backends.For(Device.Cpu)) { ByShape = true } : null;
        double loss = double.NaN;
        StepTimer.Result r;
        if (mode == "encode")
        {
            model.Eval();
            r = StepTimer.Run("whisper encode", iters, warmup, profiler, () =>
            {
                using var noGrad = GradMode.NoGrad();
                model.Encode(mel).ToDoubleArray();                                              // (B, F / 2, C)
            });
        }
        else
        {
            var ids = Enumerable.Range(0, batch * (tokens + 1)).Select(_ => (long)data.NextInt(vocab)).ToArray();
            var input = new long[batch * tokens];
            var target = new long[batch * tokens];
            for (int b = 0; b < batch; b++)
                for (int i = 0; i < tokens; i++)
                {
                    input[b * tokens + i] = ids[b * (tokens + 1) + i];
                    target[b * tokens + i] = i == 0 ? -100 : ids[b * (tokens + 1) + i + 1];
                }
            var x = Tensor.FromArray(input, [batch, tokens]);
            var y = Tensor.FromArray(target, [batch, tokens]);
            var optimizer = new AdamW(model.NamedParameters(), 1e-3, 0.9, 0.98, 1e-8, 0.1);
            model.Train();
            r = StepTimer.Run("whisper train", iters, warmup, profiler, () =>
            {
                optimizer.ZeroGrad();
                var l = model.Loss(mel, x, y);
                loss = l.Item();
                l.Backward();
                GradClip.ClipGradNorm(model.Parameters(), 1.0);
                optimizer.Step();
            });
        }
        Console.WriteLine($"ours mode={mode} batch={batch} tokens={tokens} d_model={dModel} layers={layers} heads={heads} frames={frames} vocab={vocab} " +
                          $"threads={Environment.ProcessorCount} iters={r.Timed} params={model.ParameterCount()} ms_per_iter={r.MsPerIter:F1} " +
                          $"loss={loss:F4} peak_rss_mb={StepTimer.PeakRssMb():F0} cpu_ms_per_iter={r.CpuMsPerIter:F1}");
    }
}
