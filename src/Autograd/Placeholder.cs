namespace ManagedTensor.Autograd;

internal static class Placeholder { }
