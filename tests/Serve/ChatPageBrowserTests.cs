using ManagedTensor.Apps.Serve;
using ManagedTensor.Tests.Llama;
using Microsoft.AspNetCore.Builder;
using Microsoft.Playwright;
using Xunit;

namespace ManagedTensor.Tests.Serve;

/// <summary>A test that needs Debian's chromium (.ci/run installs it); skipped, with the reason, where it is missing.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public const string Chromium = "/usr/bin/chromium";

    public ChromiumFactAttribute()
    {
        if (!File.Exists(Chromium)) Skip = $"{Chromium} is missing: `apt-get install -y chromium` (.ci/run does it as root)";
    }
}

/// <summary>
/// The chat page in a real browser: headless Debian chromium driven by Playwright (its own browser is never downloaded),
/// against the server on a loopback socket. Screenshots go to TestResults/serve/.
/// </summary>
public class ChatPageBrowserTests
{
    // As the machine notes start chromium as root: no sandbox, and nothing that reaches for the network by itself.
    private static readonly string[] ChromiumFlags =
        ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

    private static readonly string Artifacts = Directory.CreateDirectory(RepoPaths.Of("TestResults", "serve")).FullName;

    /// <summary>The server on 127.0.0.1 with a free port, and a headless browser on its page.</summary>
    private sealed class Session : IAsyncDisposable
    {
        private WebApplication _app = null!;
        private IPlaywright _playwright = null!;
        private IBrowser _browser = null!;
        public IPage Page { get; private set; } = null!;

        public static async Task<Session> Open(ICompletionEngine engine)
        {
            var s = new Session { _app = ServeApp.Build(engine, new ServeOptions(Port: 0), TextWriter.Null) };
            await s._app.StartAsync();
            s._playwright = await Playwright.CreateAsync();
            s._browser = await s._playwright.Chromium.LaunchAsync(new() { ExecutablePath = ChromiumFactAttribute.Chromium, Headless = true, Args = ChromiumFlags });
            s.Page = await s._browser.NewPageAsync(new() { ViewportSize = new() { Width = 900, Height = 640 } });
            s.Page.SetDefaultTimeout(60_000); // a hang guard on a loaded machine, not a timing assertion
            await s.Page.GotoAsync(s._app.Urls.Single());
            return s;
        }

        public async ValueTask DisposeAsync()
        {
            await _browser.DisposeAsync();
            _playwright.Dispose();
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    [ChromiumFact]
    public async Task A_message_to_stories260K_streams_a_reply_with_its_speed()
    {
        using var engine = ServeTestServer.Stories260K();
        await using var s = await Session.Open(engine);
        var page = s.Page;
        await Assertions.Expect(page.Locator("#model")).ToHaveTextAsync("stories260K");

        await page.Locator("#temperature").FillAsync("0");
        await page.Locator("#max-tokens").FillAsync("60");
        await page.Locator("#prompt").FillAsync("Once upon a time");
        await page.Locator("#prompt").PressAsync("Enter");
        await Assertions.Expect(page.Locator(".msg.user")).ToHaveTextAsync("Once upon a time");
        await Assertions.Expect(page.Locator("#send")).ToBeEnabledAsync(); // the reply is over
        string reply = await page.Locator(".msg.assistant").InnerTextAsync();
        Assert.StartsWith(", there was", reply);
        await Assertions.Expect(page.Locator("#speed")).ToContainTextAsync("tokens/s");

        // A second turn is sent with the first in the conversation.
        await page.Locator("#prompt").FillAsync("The end.");
        await page.Locator("#send").ClickAsync();
        await Assertions.Expect(page.Locator(".msg.assistant")).ToHaveCountAsync(2);
        await Assertions.Expect(page.Locator("#send")).ToBeEnabledAsync();
        await page.ScreenshotAsync(new() { Path = Path.Combine(Artifacts, "chat-page-stories260K.png") });
    }

    [ChromiumFact]
    public async Task Stop_ends_a_streaming_reply_and_frees_the_servers_slot()
    {
        string words = string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog. ", 100));
        var engine = new ScriptedEngine(reply: words, stepMilliseconds: 20); // a character every 20 ms: a reply to watch arrive
        await using var s = await Session.Open(engine);
        var page = s.Page;
        await page.Locator("#max-tokens").FillAsync("4000");
        await page.Locator("#prompt").FillAsync("Tell me about foxes");
        await page.Locator("#send").ClickAsync();

        var assistant = page.Locator(".msg.assistant");
        await Assertions.Expect(assistant).ToContainTextAsync("the quick brown"); // streamed tokens are on the page
        await Assertions.Expect(page.Locator("#stop")).ToBeEnabledAsync();
        await Assertions.Expect(page.Locator("#send")).ToBeDisabledAsync();
        await page.ScreenshotAsync(new() { Path = Path.Combine(Artifacts, "chat-page-streaming.png") });

        await page.Locator("#stop").ClickAsync();
        await Assertions.Expect(assistant.Locator(".note")).ToHaveTextAsync("(stopped)");
        await Assertions.Expect(page.Locator("#send")).ToBeEnabledAsync();
        await Assertions.Expect(page.Locator("#stop")).ToBeDisabledAsync();
        await ServeHttp.Eventually(() => engine.Freed == 1, "the server freed the slot when the browser stopped reading");
        string stopped = await assistant.InnerTextAsync();
        Assert.True(stopped.Length < words.Length, "the reply was cut short");
        await page.ScreenshotAsync(new() { Path = Path.Combine(Artifacts, "chat-page-stopped.png") });
    }
}
