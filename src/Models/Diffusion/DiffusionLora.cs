using ManagedTensor.Nn;

namespace ManagedTensor.Models.Diffusion;

/// <summary>
/// LoRA on a denoiser, to teach a trained model a class it never saw (issue 18; the recipe of Stable Diffusion LoRA
/// guides): every parameter of the base is frozen, each target Linear gets a rank-r adapter (<see cref="Lora"/>, the
/// same code as `mt finetune`), and the class embedding table stays trainable, as PEFT's modules_to_save: a class the
/// base never trained on has only its random initial row, and no adapter downstream of the embedding can move that
/// row. What trains is then r (d_in + d_out) per target plus the (classes + 1) x d table.
///
/// The targets are names of Linears in the denoiser's tree, or all-linear: in the U-Net the time-embedding MLP, each
/// ResBlock's emb_proj (where time and class enter the convolutions) and the attention's qkv and proj; in the DiT
/// every Linear. Convolutions keep their base weights.
/// </summary>
public static class DiffusionLora
{
    /// <summary>The adapters a run's settings ask for, or null for a run without LoRA.</summary>
    public static LoraConfig? ConfigOf(DiffusionTrainConfig train) =>
        train.LoraRank > 0 ? new LoraConfig(train.LoraRank, train.LoraAlpha, 0, LoraConfig.ParseTargets(train.LoraTargets)) : null;

    /// <summary>
    /// Freezes <paramref name="net"/>, attaches the adapters of <paramref name="train"/> (lora_A from
    /// <paramref name="initGen"/>, lora_B zero: the adapted model starts equal to the base) and unfreezes the class
    /// embedding. Returns the adapted layers' names. A target that names no Linear is an error listing the names there are.
    /// </summary>
    public static List<string> Attach(Denoiser net, DiffusionTrainConfig train, Generator initGen)
    {
        var config = ConfigOf(train) ?? throw new ArgumentException("DiffusionLora.Attach: the run has no LoRA (--lora-rank 0)");
        List<(string Name, Linear Layer)> adapted;
        try
        {
            adapted = Lora.Apply(net, config, initGen, initGen);
        }
        catch (ArgumentException e)
        {
            throw new UserErrorException($"--lora-rank/--lora-targets: {e.Message}");
        }
        foreach (var (_, module) in net.NamedModules().Where(m => m.Module is ClassEmbedding))
            foreach (var p in module.Parameters()) p.RequiresGrad = true;
        return adapted.Select(a => a.Name).ToList();
    }
}
