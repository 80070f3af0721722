namespace ManagedTensor.Models;

/// <summary>
/// A model that can checkpoint each block in training (<see cref="Checkpoint"/>): the forward keeps only each
/// block's input, and the backward runs each block's forward again to get its activations back. Activation memory
/// drops from every block's intermediates to the block inputs plus one block's worth, for one more forward per step;
/// gradients are the same. Decoding (a KV cache) and evaluation (no gradients) run the blocks as they are.
/// </summary>
public interface IActivationCheckpointing
{
    bool CheckpointActivations { get; set; }
}
