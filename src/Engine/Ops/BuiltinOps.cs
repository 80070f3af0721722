namespace ManagedTensor;

/// <summary>
/// The op declarations that live in the engine, registered when <see cref="OpRegistry"/> is first used.
/// Each op family beyond the hand-written front ends declares its ops in its own file and is listed here
/// once. (Built-in ops' backward rules are added by the autograd layer, src/Autograd/BackwardRules.cs.)
/// </summary>
internal static class BuiltinOps
{
    public static void Register()
    {
        NormOps.Register();
        QuantOps.Register();
        LeakyReluOps.Register();
        BatchNormOps.Register();
        SiluBackwardOps.Register();
        GroupNormOps.Register();
        QkvAttentionOps.Register();
        ScanOps.Register();
        WkvOps.Register();
        MoeOps.Register();
        CustomFunction.Register();
        BatchNormSiluOps.Register();
        GroupNormSiluOps.Register();
        ConvSiluOps.Register();
        BceWithLogitsOps.Register();
    }
}
