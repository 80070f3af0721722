namespace ManagedTensor;

/// <summary>
/// An error the user caused and can fix: a wrong option value, a missing or malformed file, a device this
/// machine does not have, a run that diverged. The message is one line written for the user (it names the
/// option, file, tensor or step), with nothing of the runtime's wording; `mt` prints it as "error: MESSAGE"
/// and exits with code 1. Anything else that escapes a command is a bug and keeps its stack trace.
/// </summary>
public class UserErrorException : Exception
{
    public UserErrorException(string message) : base(message) { }

    public UserErrorException(string message, Exception inner) : base(message, inner) { }
}
