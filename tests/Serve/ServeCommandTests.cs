using ManagedTensor.Apps;
using Xunit;

namespace ManagedTensor.Tests.Serve;

/// <summary>`mt serve` fails with its message, and without listening, when the model or an option is wrong.</summary>
public class ServeCommandTests
{
    [Theory]
    [InlineData("--model", "no/such/model.bin")]
    [InlineData("--dtype", "f8")]
    [InlineData("--parallel", "0")]
    [InlineData("--host", "example.com")]
    [InlineData("--template", "nonsense")]
    public void A_bad_model_or_option_ends_with_exit_code_1_before_listening(string option, string value)
    {
        // A server that started listening would block here until stopped: returning at all shows the error came first.
        Assert.Equal(1, MtApp.Run(["serve", option, value, "--port", "0"], TextWriter.Null));
    }
}
