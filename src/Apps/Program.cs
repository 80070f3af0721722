using ManagedTensor;

// Placeholder until the trainer lands: a tiny engine demo.
var a = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, [2, 3]);
Console.WriteLine(a);
