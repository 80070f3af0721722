using System.Globalization;
using ManagedTensor.Models.IO;

namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>
/// A procedural detection dataset, deterministic by seed: filled shapes (circle, square, triangle, star) of random
/// size, colour and rotation, overlapping a little, on a textured and noisy background. It is written in the
/// Ultralytics layout (see <see cref="YoloDataset"/>): images/{train,val}/NNNNN.png, labels/{train,val}/NNNNN.txt
/// (one `class cx cy w h` line per shape, normalized) and data.yaml naming the classes, so that the default
/// `mt detect train` run and the tests need no download, and the same files serve a user's own tools.
///
/// Image i depends only on (seed, i): its random numbers are Philox counters from i * 2^32, so a set of 100
/// images is the first 100 of a set of 1000. Each shape's box is the tight box of what is drawn (the polygon's
/// vertices, or the circle), clipped to the image; a new shape is placed only where it hides at most a third of
/// any earlier box, so every labelled object stays visible.
/// </summary>
public static class ShapesDataset
{
    public static readonly string[] ClassNames = ["circle", "square", "triangle", "star"];

    public sealed record Options(int Images, int Seed = 0, int ImageSize = 128, double ValFraction = 0.2, int MaxObjects = 4);

    /// <summary>Writes the dataset under <paramref name="dir"/> (created); returns (train images, val images).</summary>
    public static (int Train, int Val) Write(string dir, Options o)
    {
        if (o.Images < 2) throw new ArgumentException($"--images {o.Images}: need at least 2 (one for training, one for validation)");
        if (o.ImageSize < 32) throw new ArgumentException($"--imgsz {o.ImageSize}: must be at least 32");
        if (o.MaxObjects < 1) throw new ArgumentException($"max objects {o.MaxObjects}: must be at least 1");
        int val = Math.Clamp((int)Math.Round(o.Images * o.ValFraction), 1, o.Images - 1);
        int train = o.Images - val;
        foreach (string split in new[] { "train", "val" })
        {
            Directory.CreateDirectory(Path.Combine(dir, "images", split));
            Directory.CreateDirectory(Path.Combine(dir, "labels", split));
        }
        for (int i = 0; i < o.Images; i++)
        {
            string split = i < train ? "train" : "val";
            var (image, boxes) = Render(o.Seed, i, o.ImageSize, o.MaxObjects);
            string stem = i.ToString("D5", CultureInfo.InvariantCulture);
            image.SavePng(Path.Combine(dir, "images", split, stem + ".png"));
            AtomicFile.WriteAllText(Path.Combine(dir, "labels", split, stem + ".txt"), YoloLabels.Format(boxes, image.Width, image.Height));
        }
        AtomicFile.WriteAllText(Path.Combine(dir, YoloDataset.YamlName), YoloDataset.FormatYaml(ClassNames));
        return (train, val);
    }

    /// <summary>Image <paramref name="index"/> of the set seeded by <paramref name="seed"/>, and its boxes (pixels).</summary>
    public static (RgbImage Image, List<Detection> Boxes) Render(int seed, int index, int size, int maxObjects = 4)
    {
        var g = new Generator((ulong)(uint)seed, (ulong)index << 32);
        var px = Background(g, size, out var meanColour);
        var boxes = new List<Detection>();
        int wanted = 1 + g.NextInt(maxObjects);
        for (int attempt = 0; attempt < 30 * wanted && boxes.Count < wanted; attempt++)
        {
            int cls = g.NextInt(ClassNames.Length);
            double r = size * (0.06 + 0.16 * g.NextDouble());          // circumradius: 6% to 22% of the side
            double cx = r * 0.5 + g.NextDouble() * (size - r), cy = r * 0.5 + g.NextDouble() * (size - r);
            double angle = g.NextDouble() * 2 * Math.PI;
            var colour = Contrasting(g, meanColour);
            var poly = cls == 0 ? null : Polygon(cls, cx, cy, r, angle);
            var box = Clip(poly is null ? new Detection(cx - r, cy - r, 2 * r, 2 * r, 1, 0) : Bounds(poly), size) with { Class = cls };
            if (box.Width < 4 || box.Height < 4) continue;
            if (boxes.Any(b => Boxes.Iou(b, box) > 0.3 || Overlap(b, box) > 1.0 / 3)) continue;
            Fill(px, size, box, colour, (x, y) => poly is null ? (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r : Inside(poly, x, y));
            boxes.Add(box);
        }
        return (new RgbImage(size, size, px), boxes);
    }

    /// <summary>A base colour with a linear gradient, two random stripes patterns and per-pixel noise.</summary>
    private static byte[] Background(Generator g, int size, out (double R, double G, double B) mean)
    {
        var baseColour = (R: 40 + 175 * g.NextDouble(), G: 40 + 175 * g.NextDouble(), B: 40 + 175 * g.NextDouble());
        double gx = (g.NextDouble() - 0.5) * 60 / size, gy = (g.NextDouble() - 0.5) * 60 / size;  // gradient per pixel
        double f1 = (1 + 6 * g.NextDouble()) * 2 * Math.PI / size, a1 = g.NextDouble() * Math.PI, p1 = g.NextDouble() * 6.3;
        double f2 = (1 + 6 * g.NextDouble()) * 2 * Math.PI / size, a2 = g.NextDouble() * Math.PI, p2 = g.NextDouble() * 6.3;
        double amp = 8 + 20 * g.NextDouble(), noise = 4 + 16 * g.NextDouble();
        var px = new byte[size * size * 3];
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
            {
                double t = gx * (x - size / 2.0) + gy * (y - size / 2.0)
                    + amp * Math.Sin(f1 * (x * Math.Cos(a1) + y * Math.Sin(a1)) + p1)
                    + amp * 0.5 * Math.Sin(f2 * (x * Math.Cos(a2) + y * Math.Sin(a2)) + p2);
                int i = (y * size + x) * 3;
                px[i] = Byte(baseColour.R + t + noise * (g.NextDouble() - 0.5) * 2);
                px[i + 1] = Byte(baseColour.G + t + noise * (g.NextDouble() - 0.5) * 2);
                px[i + 2] = Byte(baseColour.B + t + noise * (g.NextDouble() - 0.5) * 2);
            }
        mean = baseColour;
        return px;
    }

    /// <summary>A random colour at least 120 away (Euclidean, RGB) from the background's base colour.</summary>
    private static (byte R, byte G, byte B) Contrasting(Generator g, (double R, double G, double B) bg)
    {
        while (true)
        {
            double r = 255 * g.NextDouble(), gr = 255 * g.NextDouble(), b = 255 * g.NextDouble();
            double d = Math.Sqrt((r - bg.R) * (r - bg.R) + (gr - bg.G) * (gr - bg.G) + (b - bg.B) * (b - bg.B));
            if (d >= 120) return (Byte(r), Byte(gr), Byte(b));
        }
    }

    /// <summary>The vertices of a square (class 1), triangle (2) or five-pointed star (3) of circumradius r, rotated.</summary>
    private static (double X, double Y)[] Polygon(int cls, double cx, double cy, double r, double angle)
    {
        int n = cls switch { 1 => 4, 2 => 3, _ => 10 };
        var v = new (double X, double Y)[n];
        for (int k = 0; k < n; k++)
        {
            double rk = cls == 3 && k % 2 == 1 ? r * 0.45 : r; // a star alternates outer and inner points
            double a = angle + 2 * Math.PI * k / n;
            v[k] = (cx + rk * Math.Cos(a), cy + rk * Math.Sin(a));
        }
        return v;
    }

    private static Detection Bounds((double X, double Y)[] poly)
    {
        double x0 = poly.Min(p => p.X), x1 = poly.Max(p => p.X), y0 = poly.Min(p => p.Y), y1 = poly.Max(p => p.Y);
        return new Detection(x0, y0, x1 - x0, y1 - y0, 1);
    }

    private static Detection Clip(Detection d, int size)
    {
        double x0 = Math.Clamp(d.X, 0, size), y0 = Math.Clamp(d.Y, 0, size), x1 = Math.Clamp(d.Right, 0, size), y1 = Math.Clamp(d.Bottom, 0, size);
        return d with { X = x0, Y = y0, Width = x1 - x0, Height = y1 - y0 };
    }

    /// <summary>The fraction of <paramref name="earlier"/>'s area that <paramref name="later"/> covers.</summary>
    private static double Overlap(Detection earlier, Detection later)
    {
        double w = Math.Max(0, Math.Min(earlier.Right, later.Right) - Math.Max(earlier.X, later.X));
        double h = Math.Max(0, Math.Min(earlier.Bottom, later.Bottom) - Math.Max(earlier.Y, later.Y));
        return w * h / earlier.Area;
    }

    /// <summary>Even-odd rule at the point (x, y) (a pixel's centre).</summary>
    private static bool Inside((double X, double Y)[] poly, double x, double y)
    {
        bool inside = false;
        for (int i = 0, j = poly.Length - 1; i < poly.Length; j = i++)
            if ((poly[i].Y > y) != (poly[j].Y > y) && x < (poly[j].X - poly[i].X) * (y - poly[i].Y) / (poly[j].Y - poly[i].Y) + poly[i].X)
                inside = !inside;
        return inside;
    }

    /// <summary>Paints the pixels of <paramref name="box"/> whose centres are inside the shape.</summary>
    private static void Fill(byte[] px, int size, Detection box, (byte R, byte G, byte B) c, Func<double, double, bool> inside)
    {
        for (int y = (int)box.Y; y < Math.Min(size, (int)Math.Ceiling(box.Bottom)); y++)
            for (int x = (int)box.X; x < Math.Min(size, (int)Math.Ceiling(box.Right)); x++)
                if (inside(x + 0.5, y + 0.5))
                {
                    int i = (y * size + x) * 3;
                    (px[i], px[i + 1], px[i + 2]) = (c.R, c.G, c.B);
                }
    }

    private static byte Byte(double v) => (byte)Math.Clamp((int)Math.Round(v), 0, 255);
}
