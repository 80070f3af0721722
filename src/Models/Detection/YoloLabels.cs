using System.Globalization;

namespace ManagedTensor.Models.Detection;

/// <summary>
/// The Ultralytics/YOLO label format: one text file per image (labels/NAME.txt beside images/NAME.png), one line
/// per object, `class cx cy w h`, the box's centre and size as fractions of the image's width and height. An empty
/// file (or none) is an image without objects. Every line is checked; an error names the file and line.
/// </summary>
public static class YoloLabels
{
    /// <summary>The boxes in <paramref name="path"/>, in pixels of a <paramref name="width"/> x <paramref name="height"/> image (score 1).</summary>
    public static List<Detection> Read(string path, int classes, int width, int height)
    {
        var boxes = new List<Detection>();
        if (!File.Exists(path)) return boxes; // Ultralytics: an image without a labels file has no objects
        int lineNo = 0;
        foreach (string raw in File.ReadLines(path))
        {
            lineNo++;
            string line = raw.Trim();
            if (line.Length == 0) continue;
            string where = $"{path}:{lineNo}";
            var f = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (f.Length != 5) throw new UserErrorException($"{where}: expected 'class cx cy w h' (5 fields), got {f.Length}: '{Short(line)}'");
            if (!int.TryParse(f[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int cls))
                throw new UserErrorException($"{where}: class id '{Short(f[0])}' is not an integer");
            if (cls < 0 || cls >= classes) throw new UserErrorException($"{where}: class id {cls} is out of range: the dataset has {classes} classes (0..{classes - 1})");
            var v = new double[4];
            string[] names = ["cx", "cy", "w", "h"];
            for (int i = 0; i < 4; i++)
            {
                if (!double.TryParse(f[i + 1], NumberStyles.Float, CultureInfo.InvariantCulture, out v[i]) || !double.IsFinite(v[i]))
                    throw new UserErrorException($"{where}: {names[i]} '{Short(f[i + 1])}' is not a number");
                if (v[i] < 0 || v[i] > 1) throw new UserErrorException($"{where}: {names[i]} {f[i + 1]} is outside [0, 1] (coordinates are fractions of the image size)");
            }
            if (v[2] == 0 || v[3] == 0) throw new UserErrorException($"{where}: the box has zero {(v[2] == 0 ? "width" : "height")}");
            boxes.Add(new Detection((v[0] - v[2] / 2) * width, (v[1] - v[3] / 2) * height, v[2] * width, v[3] * height, 1, cls));
        }
        return boxes;
    }

    /// <summary>Lines for <paramref name="boxes"/> (pixels of a width x height image) in the format <see cref="Read"/> takes.</summary>
    public static string Format(IEnumerable<Detection> boxes, int width, int height) =>
        string.Concat(boxes.Select(b => string.Create(CultureInfo.InvariantCulture,
            $"{b.Class} {(b.X + b.Width / 2) / width:F6} {(b.Y + b.Height / 2) / height:F6} {b.Width / width:F6} {b.Height / height:F6}\n")));

    private static string Short(string s) => s.Length <= 40 ? s : s[..40] + "...";
}
