using ManagedTensor.Models;
using ManagedTensor.Models.Training;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>The shakespeare-char presets built on the shared schedule (<see cref="Presets.ShakespeareChar"/>) are the configs each architecture wrote out in full before.</summary>
public class PresetsTests
{
    [Fact]
    public void Shakespeare_char_presets_are_the_full_configs_they_replaced()
    {
        Assert.Equal(new TrainConfig
        {
            NLayer = 6, NHead = 6, NEmbd = 384, BlockSize = 256, BatchSize = 64, Dropout = 0.2, MaxIters = 5000, LrDecayIters = 5000, EvalIters = 200,
        }, Architectures.Get("gpt").Presets["shakespeare-char"]);
        Assert.Equal(new TrainConfig
        {
            Arch = "mamba", NLayer = 12, NEmbd = 384, BlockSize = 256, BatchSize = 64, MaxIters = 5000, LrDecayIters = 5000, EvalIters = 200, OutDir = "out-mamba-char",
        }, Architectures.Get("mamba").Presets["shakespeare-char"]);
        Assert.Equal(new TrainConfig
        {
            Arch = "rwkv", NLayer = 6, NEmbd = 384, HeadSize = 64, BlockSize = 256, BatchSize = 64, MaxIters = 5000, LrDecayIters = 5000, EvalIters = 200, OutDir = "out-rwkv-char",
        }, Architectures.Get("rwkv").Presets["shakespeare-char"]);
    }
}
