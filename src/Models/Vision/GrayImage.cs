using ManagedTensor.Models.IO;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace ManagedTensor.Models.Vision;

/// <summary>
/// Grayscale images in and out of the models' range [-1, 1] (-1 black, 1 white), through SixLabors.ImageSharp:
/// reading any format it decodes (resized to the model's side), and writing a grid of generated images as a PNG.
/// </summary>
public static class GrayImage
{
    /// <summary>
    /// <paramref name="path"/> as (1, 1, side, side) in [-1, 1]: converted to 8-bit luminance, resized (bicubic) to
    /// side x side when it is another size. Fashion-MNIST draws white clothes on black: <paramref name="invert"/>
    /// turns a photo of a dark object on a white background into that.
    /// </summary>
    public static Tensor Load(string path, int side, Device device, bool invert = false)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such image file", path);
        try
        {
            using var image = Image.Load<L8>(path);
            if (image.Width != side || image.Height != side) image.Mutate(m => m.Resize(side, side));
            var px = new byte[side * side];
            image.CopyPixelDataTo(px);
            var x = px.Select(p => (float)((invert ? 255 - p : p) / 127.5 - 1)).ToArray();
            return Tensor.FromArray(x, [1, 1, side, side], device);
        }
        catch (Exception e) when (e is UnknownImageFormatException or InvalidImageContentException or NotSupportedException)
        {
            throw new UserErrorException($"{path}: not an image ImageSharp can read ({e.Message.TrimEnd('.')})", e);
        }
    }

    /// <summary>
    /// Writes images (N, 1, H, W) in [-1, 1] (clamped) as one PNG, <paramref name="columns"/> per row, 2-pixel gray
    /// gaps, each image scaled up by <paramref name="zoom"/> (nearest) so a 28-pixel item is visible; atomic.
    /// </summary>
    public static void SaveGrid(string path, Tensor images, int columns, int zoom = 2)
    {
        if (images.Rank != 4 || images.Shape[1] != 1) throw new ArgumentException($"SaveGrid: images {images.Describe()} must be (N, 1, H, W)");
        int n = images.Shape[0], h = images.Shape[2], w = images.Shape[3], gap = 2;
        columns = Math.Max(1, Math.Min(columns, n));
        int rows = (n + columns - 1) / columns;
        int width = columns * (w * zoom + gap) + gap, height = rows * (h * zoom + gap) + gap;
        var v = images.ToDoubleArray();
        var px = new byte[width * height];
        Array.Fill(px, (byte)96);
        for (int i = 0; i < n; i++)
        {
            int x0 = gap + i % columns * (w * zoom + gap), y0 = gap + i / columns * (h * zoom + gap);
            for (int y = 0; y < h * zoom; y++)
                for (int x = 0; x < w * zoom; x++)
                {
                    double p = v[(i * h + y / zoom) * w + x / zoom];
                    px[(y0 + y) * width + x0 + x] = (byte)Math.Round(Math.Clamp((p + 1) * 127.5, 0, 255));
                }
        }
        using var image = Image.LoadPixelData<L8>(px, width, height);
        AtomicFile.Write(path, s => image.Save(s, new PngEncoder()));
    }
}
