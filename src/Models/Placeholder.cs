namespace ManagedTensor.Models;

internal static class Placeholder { }
