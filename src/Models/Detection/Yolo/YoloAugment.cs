namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>
/// Ultralytics' training augmentation without mosaic, deterministic by (seed, epoch, image): on the letterboxed
/// S x S image and its boxes,
///   1. scale and translate (random_perspective with only those two): zoom by s in [1 - scale, 1 + scale] about the
///      centre, shift by up to translate * S each way; nearest-pixel sampling, gray 114 outside; boxes mapped,
///      clipped, and dropped when under 2 pixels wide or tall or under 10% of their mapped area (box_candidates);
///   2. HSV jitter: hue, saturation and value gains 1 + U(-1, 1) * (0.015, 0.7, 0.4), one draw per image;
///   3. horizontal flip with probability 0.5.
/// </summary>
public sealed record YoloAugment(double Scale = 0.5, double Translate = 0.1, double HueGain = 0.015, double SatGain = 0.7, double ValGain = 0.4, double FlipLr = 0.5)
{
    public static readonly YoloAugment None = new(0, 0, 0, 0, 0, 0);

    public (RgbImage Image, List<Detection> Boxes) Apply(RgbImage image, IReadOnlyList<Detection> boxes, Generator g)
    {
        var (img, bx) = Affine(image, boxes, g);
        img = Hsv(img, g);
        if (g.NextDouble() < FlipLr) (img, bx) = Flip(img, bx);
        return (img, bx);
    }

    private (RgbImage, List<Detection>) Affine(RgbImage image, IReadOnlyList<Detection> boxes, Generator g)
    {
        double s = 1 + (2 * g.NextDouble() - 1) * Scale;
        double tx = (2 * g.NextDouble() - 1) * Translate * image.Width, ty = (2 * g.NextDouble() - 1) * Translate * image.Height;
        if (s == 1 && tx == 0 && ty == 0) return (image, boxes.ToList());
        double cx = image.Width / 2.0, cy = image.Height / 2.0;
        // forward map: p' = (p - c) s + c + t; each output pixel reads the input at the inverse of its centre
        var px = new byte[image.Pixels.Length];
        Array.Fill(px, Letterbox.PadValue);
        for (int y = 0; y < image.Height; y++)
        {
            int sy = (int)Math.Floor((y + 0.5 - cy - ty) / s + cy);
            if (sy < 0 || sy >= image.Height) continue;
            for (int x = 0; x < image.Width; x++)
            {
                int sx = (int)Math.Floor((x + 0.5 - cx - tx) / s + cx);
                if (sx < 0 || sx >= image.Width) continue;
                Array.Copy(image.Pixels, (sy * image.Width + sx) * 3, px, (y * image.Width + x) * 3, 3);
            }
        }
        var kept = new List<Detection>();
        foreach (var b in boxes)
        {
            double x0 = (b.X - cx) * s + cx + tx, y0 = (b.Y - cy) * s + cy + ty, w = b.Width * s, h = b.Height * s;
            double cx0 = Math.Clamp(x0, 0, image.Width), cy0 = Math.Clamp(y0, 0, image.Height);
            double cx1 = Math.Clamp(x0 + w, 0, image.Width), cy1 = Math.Clamp(y0 + h, 0, image.Height);
            double cw = cx1 - cx0, ch = cy1 - cy0;
            if (cw > 2 && ch > 2 && cw * ch / (w * h + 1e-16) > 0.1) kept.Add(b with { X = cx0, Y = cy0, Width = cw, Height = ch });
        }
        return (image with { Pixels = px }, kept);
    }

    /// <summary>Multiplies hue (as a fraction of the colour wheel), saturation and value by random gains.</summary>
    private RgbImage Hsv(RgbImage image, Generator g)
    {
        double gh = 1 + (2 * g.NextDouble() - 1) * HueGain, gs = 1 + (2 * g.NextDouble() - 1) * SatGain, gv = 1 + (2 * g.NextDouble() - 1) * ValGain;
        if (gh == 1 && gs == 1 && gv == 1) return image;
        var px = (byte[])image.Pixels.Clone();
        for (int i = 0; i < px.Length; i += 3)
        {
            double r = px[i] / 255.0, gr = px[i + 1] / 255.0, b = px[i + 2] / 255.0;
            double max = Math.Max(r, Math.Max(gr, b)), min = Math.Min(r, Math.Min(gr, b)), d = max - min;
            double hue = d == 0 ? 0 : max == r ? ((gr - b) / d + 6) % 6 : max == gr ? (b - r) / d + 2 : (r - gr) / d + 4; // [0, 6)
            double sat = max == 0 ? 0 : d / max;
            hue = (hue * gh % 6 + 6) % 6;
            sat = Math.Clamp(sat * gs, 0, 1);
            double val = Math.Clamp(max * gv, 0, 1);
            double c = val * sat, xx = c * (1 - Math.Abs(hue % 2 - 1)), m = val - c;
            var (rr, gg, bb) = (int)hue switch { 0 => (c, xx, 0.0), 1 => (xx, c, 0.0), 2 => (0.0, c, xx), 3 => (0.0, xx, c), 4 => (xx, 0.0, c), _ => (c, 0.0, xx) };
            px[i] = (byte)Math.Round((rr + m) * 255);
            px[i + 1] = (byte)Math.Round((gg + m) * 255);
            px[i + 2] = (byte)Math.Round((bb + m) * 255);
        }
        return image with { Pixels = px };
    }

    private static (RgbImage, List<Detection>) Flip(RgbImage image, List<Detection> boxes)
    {
        int w = image.Width;
        var px = new byte[image.Pixels.Length];
        for (int y = 0; y < image.Height; y++)
            for (int x = 0; x < w; x++)
                Array.Copy(image.Pixels, (y * w + x) * 3, px, (y * w + w - 1 - x) * 3, 3);
        return (image with { Pixels = px }, boxes.Select(b => b with { X = w - b.Right }).ToList());
    }
}
