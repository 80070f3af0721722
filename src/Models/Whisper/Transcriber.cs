using ManagedTensor.Models.Audio;
using ManagedTensor.Models.Formats;

namespace ManagedTensor.Models.Whisper;

/// <summary>A file's transcript: the text, its segments (with timestamps when asked for) and what the WAV held.</summary>
public sealed record Transcript(string Text, IReadOnlyList<Segment> Segments, WavInfo Audio);

/// <summary>
/// Audio file to text with a Whisper model: the WAV is read and converted to 16 kHz mono (<see cref="WavAudio"/>), cut
/// into 30 s chunks as Whisper reads long audio (the model's input length: 2 max_source_positions frames of 10 ms;
/// each chunk zero-padded to it; this is whisper's simplest
/// long-form mode: chunks do not move with the predicted timestamps), each chunk's log-mel spectrogram is encoded
/// once and decoded after the prompt (start of transcript, language, transcribe, no-timestamps unless timestamps are
/// asked for), and the chunks' texts are joined.
/// </summary>
public sealed class Transcriber(WhisperModel model, WhisperTokenizer tokenizer)
{
    public WhisperModel Model { get; } = model;
    public WhisperTokenizer Tokenizer { get; } = tokenizer;

    /// <summary>Opens a Hugging Face Whisper directory (or its config.json): weights and tokenizer.</summary>
    public static Transcriber Open(string path, Device? device = null)
    {
        using var ck = HfCheckpoint.Open(path);
        var model = HfWhisper.LoadModel(ck, device);
        var tok = WhisperTokenizer.Load(ck.Directory);
        if (tok.VocabSize > model.Config.VocabSize)
            throw new InvalidModelFileException(ck.Directory, $"the tokenizer has {tok.VocabSize} tokens, the model only {model.Config.VocabSize}");
        return new Transcriber(model, tok);
    }

    public Transcript TranscribeFile(string path, DecodeOptions options)
    {
        var (samples, info) = WavAudio.Read(path);
        return Transcribe(samples, info, options);
    }

    public Transcript Transcribe(float[] samples, WavInfo info, DecodeOptions options)
    {
        var prompt = Tokenizer.Prompt(options.Language, options.Timestamps);
        var segments = new List<Segment>();
        var texts = new List<string>();
        int frames = Model.Config.InputFrames; // 3000 (30 s) for Whisper's own models
        foreach (var (start, chunk) in LogMel.Chunks(samples, frames * LogMel.HopLength))
        {
            Tensor audio;
            using (GradMode.NoGrad())
                audio = Model.Encode(LogMel.Compute(chunk, Model.Config.NMels, frames).Unsqueeze(0).To(Model.Device)); // (1, 1500, C)
            var (tokens, _) = WhisperSearch.Decode(Model, Tokenizer, audio, prompt, options);
            double end = start + (double)chunk.Length / LogMel.SampleRate;
            var chunkSegments = options.Timestamps
                ? WhisperSearch.Segments(Tokenizer, tokens, start, end)
                : [new Segment(start, end, Tokenizer.DecodeText(tokens))];
            segments.AddRange(chunkSegments.Where(s => s.Text.Length > 0));
            texts.Add(Tokenizer.DecodeText(tokens));
        }
        return new Transcript(string.Join(" ", texts.Where(t => t.Length > 0)), segments, info);
    }
}
