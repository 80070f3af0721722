using Microsoft.AspNetCore.Http;
namespace ManagedTensor.Apps.Serve;

/// <summary>
/// The chat page at "/": one HTML file with its script and style inline (no build step, nothing fetched from elsewhere),
/// compiled into the executable as a resource so the single-file bundle serves it too.
/// </summary>
public static class ChatPage
{
    private const string ResourceName = "ManagedTensor.Apps.Serve.ChatPage.html";

    private static readonly Lazy<byte[]> Html = new(() =>
    {
        using var s = typeof(ChatPage).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"the resource {ResourceName} is missing from the build");
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    });

    public static async Task Write(HttpContext ctx)
    {
        ctx.Response.ContentType = "text/html; charset=utf-8";
        // Everything the page needs is in it: nothing else may load, and it must not be framed by another site.
        ctx.Response.Headers.ContentSecurityPolicy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'";
        ctx.Response.Headers.XContentTypeOptions = "nosniff";
        await ctx.Response.Body.WriteAsync(Html.Value);
    }
}
