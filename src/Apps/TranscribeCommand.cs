using System.CommandLine;
using System.Globalization;
using ManagedTensor.Models.Whisper;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt transcribe FILE.wav... [--model DIR] [--beam N] [--timestamps]`: speech to text with a Whisper model (a Hugging
/// Face WhisperForConditionalGeneration directory: config.json, model.safetensors, tokenizer.json or vocab.json +
/// merges.txt). Prints each file's text, or its segments with start and end times.
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

    /// <summary>mm:ss.fff, as whisper prints segment times.</summary>
    public static string Time(double seconds) =>
        $"{(int)(seconds / 60):00}:{(seconds % 60).ToString("00.000", CultureInfo.InvariantCulture)}";
}
