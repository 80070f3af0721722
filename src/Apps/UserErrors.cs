using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.Json;

namespace ManagedTensor.Apps;

/// <summary>
/// The one place where a failure becomes what the user reads. An error the user caused and can fix (a wrong
/// option value, a missing, unreadable or malformed file, a device this machine lacks) becomes a single line,
/// "error: MESSAGE" on stderr, and exit code 1, in the user's terms: no "(Parameter 'x')", no "Actual value
/// was", no CLR type names. Anything else is a bug and keeps the runtime's full report.
/// </summary>
public static class UserErrors
{
    public const int ExitCode = 1;

    /// <summary>The one-line message for an error the user can fix, or null when <paramref name="e"/> is a bug.</summary>
    public static string? Describe(Exception e) => e switch
    {
        // Parallel loops wrap what their bodies throw.
        AggregateException { InnerExceptions.Count: 1 } a => Describe(a.InnerExceptions[0]),
        UserErrorException or InvalidDataException or JsonException => OneLine(e.Message),
        // A file that is missing, unreadable or unwritable, a full disk: the OS's reason names the path.
        IOException or UnauthorizedAccessException => OneLine(e.Message),
        ArgumentException a => OneLine(WithoutParameterName(a)),
        NotSupportedException => OneLine(e.Message),
        _ => null,
    };

    /// <summary>
    /// A command-line parse error in the option's terms. System.CommandLine's conversion failures read "Cannot parse
    /// argument 'abc' for option '--length' as expected type 'System.Int32'"; this says "--length: 'abc' is not a whole number".
    /// </summary>
    public static string Describe(ParseError error)
    {
        var (name, valueType) = error.SymbolResult switch
        {
            OptionResult o => (o.Option.Name, o.Option.ValueType),
            ArgumentResult { Parent: OptionResult o } => (o.Option.Name, o.Option.ValueType),
            ArgumentResult a => (a.Argument.Name, a.Argument.ValueType),
            _ => (null, null),
        };
        var elementType = valueType is { IsArray: true } ? valueType.GetElementType()! : valueType;
        // Only the parser's own conversion failures name a CLR type; errors from validators are already in plain words.
        if (name is not null && elementType is not null && error.SymbolResult is { } result && error.Message.Contains(elementType.FullName!, StringComparison.Ordinal))
        {
            foreach (var token in result.Tokens)
                if (ExpectedKind(elementType) is { } kind && !Parses(token.Value, elementType))
                    return $"{name}: '{token.Value}' is not {kind}";
        }
        return OneLine(error.Message);
    }

    /// <summary>What a value of <paramref name="t"/> looks like, in words (null: any text is accepted).</summary>
    private static string? ExpectedKind(Type t)
    {
        if (t.IsEnum) return "one of " + string.Join(", ", Enum.GetNames(t));
        if (t == typeof(int) || t == typeof(long)) return "a whole number";
        if (t == typeof(uint) || t == typeof(ulong)) return "a whole number >= 0";
        if (t == typeof(float) || t == typeof(double)) return "a number";
        if (t == typeof(bool)) return "true or false";
        return null;
    }

    private static bool Parses(string s, Type t)
    {
        var inv = CultureInfo.InvariantCulture;
        if (t.IsEnum) return Enum.TryParse(t, s, ignoreCase: true, out _);
        if (t == typeof(int)) return int.TryParse(s, NumberStyles.Integer, inv, out _);
        if (t == typeof(long)) return long.TryParse(s, NumberStyles.Integer, inv, out _);
        if (t == typeof(uint)) return uint.TryParse(s, NumberStyles.Integer, inv, out _);
        if (t == typeof(ulong)) return ulong.TryParse(s, NumberStyles.Integer, inv, out _);
        if (t == typeof(float)) return float.TryParse(s, NumberStyles.Float, inv, out _);
        if (t == typeof(double)) return double.TryParse(s, NumberStyles.Float, inv, out _);
        if (t == typeof(bool)) return bool.TryParse(s, out _);
        return true;
    }

    /// <summary>
    /// An ArgumentException's own message: .NET appends " (Parameter 'name')" and, for an out-of-range value,
    /// a second line "Actual value was X."; the messages thrown here already name the option and its value.
    /// </summary>
    private static string WithoutParameterName(ArgumentException a)
    {
        string m = a.Message;
        int newline = m.IndexOfAny(['\r', '\n']);
        if (newline >= 0) m = m[..newline];
        string suffix = $" (Parameter '{a.ParamName}')";
        return a.ParamName is not null && m.EndsWith(suffix, StringComparison.Ordinal) ? m[..^suffix.Length] : m;
    }

    /// <summary>Messages are written as one line; one from the OS or a parser may not be.</summary>
    private static string OneLine(string message) =>
        string.Join(" ", message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
