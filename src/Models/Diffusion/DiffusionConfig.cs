using System.Text.Json.Serialization;

namespace ManagedTensor.Models.Diffusion;

/// <summary>
/// The denoiser and its diffusion process, stored in a checkpoint's metadata. Images are ImageSize x ImageSize with
/// Channels channels in [-1, 1] (Fashion-MNIST's 28x28 padded to 32x32). Fields of the other architecture are kept
/// but unused.
/// </summary>
public sealed record DiffusionConfig(
    string Arch = "unet", int ImageSize = 32, int Channels = 1, int Classes = 10, double ClassDropProb = 0.1,
    string Schedule = "linear", int TrainSteps = 1000, string Prediction = "eps",
    // U-Net: base channels, a multiplier per resolution (comma-separated), ResBlocks per resolution, attention heads at the lowest resolution.
    int UnetChannels = 32, string ChannelMults = "1,2,2", int ResBlocks = 1, int Heads = 4,
    // DiT: patch size, width, depth, heads (DiT-S is 384 wide, 12 deep, 6 heads).
    int PatchSize = 4, int DitHidden = 128, int DitDepth = 6, int DitHeads = 4)
{
    public static readonly string[] Archs = ["unet", "dit"];

    [JsonIgnore]
    public int[] Mults => ChannelMults.Split(',', StringSplitOptions.TrimEntries).Select(s =>
        int.TryParse(s, out int m) && m > 0 ? m : throw new UserErrorException($"--channel-mults {ChannelMults}: '{s}' is not a positive whole number")).ToArray();

    [JsonIgnore]
    public Prediction PredictionKind => Prediction switch
    {
        "eps" => Diffusion.Prediction.Epsilon,
        "v" => Diffusion.Prediction.V,
        _ => throw new UserErrorException($"--prediction {Prediction}: expected eps or v"),
    };

    public void Validate()
    {
        if (!Archs.Contains(Arch)) throw new UserErrorException($"--arch {Arch}: expected unet or dit");
        if (Classes < 1) throw new UserErrorException($"classes {Classes}: need at least 1");
        if (ClassDropProb is < 0 or >= 1) throw new UserErrorException($"--class-drop {ClassDropProb}: must be in [0, 1)");
        if (TrainSteps < 2) throw new UserErrorException($"--diffusion-steps {TrainSteps}: need at least 2");
        _ = PredictionKind;
        _ = new NoiseSchedule(Schedule, TrainSteps);
        if (Arch == "unet")
        {
            var m = Mults;
            if (ImageSize % (1 << (m.Length - 1)) != 0) throw new UserErrorException($"image size {ImageSize} must halve {m.Length - 1} times (--channel-mults {ChannelMults})");
            if (UnetChannels < 8 || UnetChannels % 8 != 0) throw new UserErrorException($"--channels {UnetChannels}: must be a multiple of 8 (GroupNorm uses 8 groups)");
            if (ResBlocks < 1) throw new UserErrorException($"--res-blocks {ResBlocks}: need at least 1");
            if (Heads < 1 || UnetChannels * m[^1] % Heads != 0) throw new UserErrorException($"--heads {Heads}: must divide the {UnetChannels * m[^1]} channels of the lowest resolution");
        }
        else
        {
            if (PatchSize < 1 || ImageSize % PatchSize != 0) throw new UserErrorException($"--patch {PatchSize}: must divide the image size {ImageSize}");
            if (DitHeads < 1 || DitHidden % DitHeads != 0 || DitHidden % 4 != 0) throw new UserErrorException($"--hidden {DitHidden}: must be a multiple of 4 and of --heads {DitHeads}");
            if (DitDepth < 1) throw new UserErrorException($"--depth {DitDepth}: need at least 1");
        }
    }
}
