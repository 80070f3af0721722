using ManagedTensor.Apps.Serve;

using Xunit;

namespace ManagedTensor.Tests.Serve;

public class StopStringsTests
{
    private static (string Sent, bool Stopped) Run(string[] stops, params string[] pieces)
    {
        var s = new StopStrings(stops);
        string sent = string.Concat(pieces.Select(s.Push));
        return (s.Stopped ? sent : sent + s.Flush(), s.Stopped);
    }

    [Fact]
    public void A_stop_string_split_over_pieces_is_found_and_nothing_of_it_is_sent()
    {
        var s = new StopStrings(["\nUser:"]);
        Assert.Equal("Hello", s.Push("Hello\nUs"));   // "\nUs" might start the stop: held back
        Assert.Equal("", s.Push("er"));
        Assert.Equal("", s.Push(": and more"));
        Assert.True(s.Stopped);
        Assert.Equal("", s.Push("later"));
    }

    [Fact]
    public void Held_back_text_that_turns_out_not_to_be_a_stop_is_sent()
    {
        var s = new StopStrings(["END"]);
        Assert.Equal("the ", s.Push("the EN"));
        Assert.Equal("ENd", s.Push("d"));
        Assert.Equal("", s.Push("E"));
        Assert.Equal("E", s.Flush());
        Assert.False(s.Stopped);
    }

    [Theory]
    [InlineData("abc.def", "abc")]
    [InlineData("ab!c.def", "ab")]
    [InlineData("abc", "abc")]
    public void The_earliest_of_several_stops_wins(string text, string expected)
    {
        var (sent, _) = Run([".", "!"], text.Select(c => c.ToString()).ToArray());
        Assert.Equal(expected, sent);
        Assert.Equal(expected, Run([".", "!"], text).Sent);
    }

    [Fact]
    public void Without_stops_every_piece_passes_at_once()
    {
        var s = new StopStrings([]);
        Assert.Equal("abc", s.Push("abc"));
        Assert.Equal("", s.Flush());
    }

    [Fact]
    public void Overlapping_prefixes_hold_back_the_longest_possible_start()
    {
        var s = new StopStrings(["aab"]);
        Assert.Equal("", s.Push("a"));
        Assert.Equal("", s.Push("a"));
        Assert.Equal("a", s.Push("a"));  // "aaa": only the last "aa" can still start "aab"
        Assert.Equal("", s.Push("b"));
        Assert.True(s.Stopped);
    }
}
