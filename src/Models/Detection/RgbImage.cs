using ManagedTensor.Models.IO;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace ManagedTensor.Models.Detection;

/// <summary>
/// An 8-bit RGB image, row-major (H, W, 3), as the detectors read it. Decoding and encoding go through
/// SixLabors.ImageSharp: PNG, JPEG, BMP, GIF, TGA, WebP; grayscale, palette and 16-bit files become 8-bit RGB
/// (an alpha channel is dropped, not blended, as TF.js's decodeImage(.., 3) does).
/// </summary>
public sealed record RgbImage(int Width, int Height, byte[] Pixels)
{
    public byte this[int y, int x, int c] => Pixels[(y * Width + x) * 3 + c];

    public static RgbImage Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such image file", path);
        try
        {
            using var image = Image.Load<Rgb24>(path);
            var pixels = new byte[image.Width * image.Height * 3];
            image.CopyPixelDataTo(pixels);
            return new RgbImage(image.Width, image.Height, pixels);
        }
        catch (Exception e) when (e is UnknownImageFormatException or InvalidImageContentException or NotSupportedException)
        {
            throw new UserErrorException($"{path}: not an image ImageSharp can read ({e.Message.TrimEnd('.')})", e);
        }
    }

    /// <summary>A copy with each box outlined in <paramref name="color"/> (a line about 1/200 of the image's size thick).</summary>
    public RgbImage WithBoxes(IEnumerable<Detection> boxes, (byte R, byte G, byte B) color)
    {
        var px = (byte[])Pixels.Clone();
        int t = Math.Max(2, Math.Min(Width, Height) / 200);
        foreach (var d in boxes)
        {
            int x0 = Clamp((int)Math.Round(d.X), Width), x1 = Clamp((int)Math.Round(d.Right), Width);
            int y0 = Clamp((int)Math.Round(d.Y), Height), y1 = Clamp((int)Math.Round(d.Bottom), Height);
            Fill(px, x0, y0, x1, Math.Min(y0 + t, y1), color);             // top edge
            Fill(px, x0, Math.Max(y1 - t, y0), x1, y1, color);             // bottom
            Fill(px, x0, y0, Math.Min(x0 + t, x1), y1, color);             // left
            Fill(px, Math.Max(x1 - t, x0), y0, x1, y1, color);             // right
        }
        return this with { Pixels = px };
    }

    private static int Clamp(int v, int size) => Math.Clamp(v, 0, size);

    private void Fill(byte[] px, int x0, int y0, int x1, int y1, (byte R, byte G, byte B) c)
    {
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++)
            {
                int i = (y * Width + x) * 3;
                (px[i], px[i + 1], px[i + 2]) = (c.R, c.G, c.B);
            }
    }

    /// <summary>Writes a PNG atomically (a temporary file renamed over <paramref name="path"/>).</summary>
    public void SavePng(string path)
    {
        using var image = Image.LoadPixelData<Rgb24>(Pixels, Width, Height);
        AtomicFile.Write(path, s => image.Save(s, new PngEncoder()));
    }
}
