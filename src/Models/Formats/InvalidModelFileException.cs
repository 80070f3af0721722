namespace ManagedTensor.Models.Formats;

/// <summary>
/// A model, tokenizer or weights file that does not follow its format. The message always names the file,
/// the field and the offending value, so a truncated download or a wrong file is diagnosed from the message alone.
/// </summary>
public sealed class InvalidModelFileException : UserErrorException
{
    public string FilePath { get; }

    public InvalidModelFileException(string filePath, string message)
        : base($"{filePath}: {message}") => FilePath = filePath;
}
