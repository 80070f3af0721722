using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace ManagedTensor.Models.Detection;

/// <summary>
/// Ultralytics' LetterBox for a square input: scale the image by r = min(S / W, S / H) so its long side fits
/// (bilinear, through ImageSharp), centre it, and pad the rest with gray 114. The split of an odd padding follows
/// Ultralytics (top = round(d - 0.1), bottom = round(d + 0.1)). <see cref="ToImage"/> maps a box on the network's
/// input back to the original image's pixels.
/// </summary>
public readonly record struct Letterbox(double Scale, int PadLeft, int PadTop, int Size, int ImageWidth, int ImageHeight)
{
    public const byte PadValue = 114;

    public static (RgbImage Image, Letterbox Map) Apply(RgbImage image, int size)
    {
        if (size <= 0) throw new ArgumentException($"letterbox size {size}: must be positive");
        double r = Math.Min((double)size / image.Width, (double)size / image.Height);
        int w = Math.Max(1, (int)Math.Round(image.Width * r)), h = Math.Max(1, (int)Math.Round(image.Height * r));
        double dw = (size - w) / 2.0, dh = (size - h) / 2.0;
        int left = (int)Math.Round(dw - 0.1, MidpointRounding.ToEven), top = (int)Math.Round(dh - 0.1, MidpointRounding.ToEven);

        var resized = image.Pixels;
        if (w != image.Width || h != image.Height)
        {
            using var img = Image.LoadPixelData<Rgb24>(image.Pixels, image.Width, image.Height);
            img.Mutate(c => c.Resize(w, h, KnownResamplers.Triangle)); // Triangle = bilinear
            resized = new byte[w * h * 3];
            img.CopyPixelDataTo(resized);
        }
        var px = new byte[size * size * 3];
        Array.Fill(px, PadValue);
        for (int y = 0; y < h; y++)
            Array.Copy(resized, y * w * 3, px, ((top + y) * size + left) * 3, w * 3);
        return (new RgbImage(size, size, px), new Letterbox(r, left, top, size, image.Width, image.Height));
    }

    /// <summary>A box on the letterboxed input, in the original image's pixels (clipped to the image).</summary>
    public Detection ToImage(Detection d)
    {
        double x0 = Math.Clamp((d.X - PadLeft) / Scale, 0, ImageWidth), y0 = Math.Clamp((d.Y - PadTop) / Scale, 0, ImageHeight);
        double x1 = Math.Clamp((d.Right - PadLeft) / Scale, 0, ImageWidth), y1 = Math.Clamp((d.Bottom - PadTop) / Scale, 0, ImageHeight);
        return d with { X = x0, Y = y0, Width = x1 - x0, Height = y1 - y0 };
    }

    /// <summary>A box in the original image's pixels, on the letterboxed input (for training labels).</summary>
    public Detection ToInput(Detection d) =>
        d with { X = d.X * Scale + PadLeft, Y = d.Y * Scale + PadTop, Width = d.Width * Scale, Height = d.Height * Scale };
}
