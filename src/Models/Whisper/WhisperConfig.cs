namespace ManagedTensor.Models.Whisper;

/// <summary>
/// Whisper's shape, with Hugging Face's config.json names in the comments. Defaults are whisper-tiny.en (39M):
/// 80 mel bins, 384 wide, 4 + 4 layers of 6 heads, 1500 audio positions (3000 mel frames = 30 s, halved by conv2's
/// stride), 448 text positions, GPT-2's 50,257 tokens plus Whisper's 1,607 special ones.
/// </summary>
public sealed record WhisperConfig(
    int NMels = 80,                    // num_mel_bins
    int DModel = 384,                  // d_model
    int EncoderLayers = 4,             // encoder_layers
    int EncoderHeads = 6,              // encoder_attention_heads
    int EncoderFfn = 1536,             // encoder_ffn_dim
    int DecoderLayers = 4,             // decoder_layers
    int DecoderHeads = 6,              // decoder_attention_heads
    int DecoderFfn = 1536,             // decoder_ffn_dim
    int MaxSourcePositions = 1500,     // max_source_positions (audio frames after conv2)
    int MaxTargetPositions = 448,      // max_target_positions (tokens)
    int VocabSize = 51864) : IModelConfig // vocab_size
{
    /// <summary>Mel frames the encoder takes at most: conv2 halves them into <see cref="MaxSourcePositions"/>.</summary>
    public int InputFrames => 2 * MaxSourcePositions;

    public void Validate()
    {
        if (NMels < 1 || DModel < 1 || EncoderLayers < 1 || EncoderHeads < 1 || EncoderFfn < 1 || DecoderLayers < 1 || DecoderHeads < 1
            || DecoderFfn < 1 || MaxSourcePositions < 1 || MaxTargetPositions < 1 || VocabSize < 1)
            throw new ArgumentException($"Whisper config: every size must be positive: {this}");
        if (DModel % EncoderHeads != 0 || DModel % DecoderHeads != 0)
            throw new ArgumentException($"Whisper config: d_model {DModel} must be a multiple of the encoder's {EncoderHeads} and the decoder's {DecoderHeads} heads");
        if (DModel % 2 != 0 || DModel < 4) throw new ArgumentException($"Whisper config: d_model {DModel} must be even and >= 4 (sinusoidal positions take sin and cos halves)");
    }
}
