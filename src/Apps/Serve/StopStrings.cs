using System.Text;

namespace ManagedTensor.Apps.Serve;

/// <summary>
/// OpenAI's `stop`: the completion ends where one of the strings first appears, and the string itself is not returned.
/// Tokens arrive a piece at a time and a stop string can span several, so text that might be the start of a stop string
/// is held back until the next piece decides: a client never sees text that a later piece turns into a stop.
/// </summary>
public sealed class StopStrings(IReadOnlyList<string> stops)
{
    private readonly StringBuilder _held = new();

    /// <summary>Whether a stop string has been seen (everything after it is dropped).</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds <paramref name="piece"/>; returns the text that is now safe to send.</summary>
    public string Push(string piece)
    {
        if (Stopped) return "";
        if (stops.Count == 0) return piece;
        _held.Append(piece);
        string text = _held.ToString();
        int cut = -1;
        foreach (var s in stops)
        {
            int at = text.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            _held.Clear();
            return text[..cut];
        }
        // Keep the longest tail of the text that is a proper prefix of some stop string.
        int keep = 0;
        foreach (var s in stops)
            for (int len = Math.Min(s.Length - 1, text.Length); len > keep; len--)
                if (text.AsSpan(text.Length - len).SequenceEqual(s.AsSpan(0, len))) { keep = len; break; }
        _held.Remove(0, text.Length - keep);
        return text[..^keep];
    }

    /// <summary>The text still held back when generation ends without a stop string: it was never a stop, so it is sent.</summary>
    public string Flush()
    {
        string rest = Stopped ? "" : _held.ToString();
        _held.Clear();
        return rest;
    }
}
