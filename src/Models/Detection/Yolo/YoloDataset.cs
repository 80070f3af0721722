using System.Globalization;
using System.Text;

namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>
/// A dataset in the Ultralytics/YOLO layout, as users bring it:
/// <code>
/// DIR/data.yaml            train: images/train   val: images/val   names: [circle, square, ...]
/// DIR/images/train/*.png   (or .jpg, .bmp, ...)
/// DIR/labels/train/*.txt   one `class cx cy w h` line per object, fractions of the image size (YoloLabels)
/// </code>
/// An image's labels file is its path with the last "images" folder replaced by "labels" and the extension by
/// .txt (Ultralytics' img2label_paths); a missing or empty file is an image without objects. data.yaml is read in
/// the subset Ultralytics' own files use: `path`, `train`, `val`, `nc` and `names` as an inline list, a block list
/// (`- name`) or a block mapping (`0: name`). Paths are relative to `path` when given, else to the yaml's folder.
/// </summary>
public sealed class YoloDataset
{
    public const string YamlName = "data.yaml";
    private static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".webp"];

    private YoloDataset(string yaml, IReadOnlyList<string> names, string root, string? train, string? val)
        => (YamlPath, Names, Root, _train, _val) = (yaml, names, root, train, val);

    private readonly string? _train, _val;
    public string YamlPath { get; }
    public string Root { get; }
    public IReadOnlyList<string> Names { get; }
    public int Classes => Names.Count;

    /// <summary>Reads DIR/data.yaml, or the given .yaml file.</summary>
    public static YoloDataset Open(string dirOrYaml)
    {
        string yaml = Directory.Exists(dirOrYaml) ? Path.Combine(dirOrYaml, YamlName) : dirOrYaml;
        if (!File.Exists(yaml))
            throw new UserErrorException($"{yaml}: no such file (a dataset is a folder with {YamlName}, images/ and labels/; `mt detect make-data --out DIR` writes one)");
        var (values, names) = ParseYaml(yaml);
        if (names.Count == 0) throw new UserErrorException($"{yaml}: no class names (expected `names: [a, b, ...]` or a `names:` block)");
        if (values.TryGetValue("nc", out string? nc) && (!int.TryParse(nc, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) || n != names.Count))
            throw new UserErrorException($"{yaml}: nc: {nc} does not match the {names.Count} class names");
        string baseDir = Path.GetDirectoryName(Path.GetFullPath(yaml))!;
        string root = values.TryGetValue("path", out string? p) && p.Length > 0 ? Path.GetFullPath(Path.Combine(baseDir, p)) : baseDir;
        return new YoloDataset(yaml, names, root, values.GetValueOrDefault("train"), values.GetValueOrDefault("val"));
    }

    /// <summary>The image files of a split ("train" or "val"), sorted by name.</summary>
    public IReadOnlyList<string> Images(string split)
    {
        string? rel = split switch { "train" => _train, "val" => _val, _ => throw new ArgumentException($"split '{split}': expected train or val") };
        if (string.IsNullOrEmpty(rel)) throw new UserErrorException($"{YamlPath}: no `{split}:` entry");
        string dir = Path.Combine(Root, rel);
        if (!Directory.Exists(dir)) throw new UserErrorException($"{YamlPath}: {split}: {dir} is not a folder");
        var files = Directory.EnumerateFiles(dir).Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .OrderBy(f => f, StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new UserErrorException($"{dir}: no images ({string.Join(", ", ImageExtensions)})");
        return files;
    }

    /// <summary>Ultralytics' img2label_paths: .../images/x/a.png -> .../labels/x/a.txt.</summary>
    public static string LabelPath(string image)
    {
        string sep = Path.DirectorySeparatorChar.ToString();
        string full = Path.GetFullPath(image);
        int k = full.LastIndexOf(sep + "images" + sep, StringComparison.Ordinal);
        if (k < 0) throw new UserErrorException($"{image}: not under an images/ folder, so its labels file cannot be found");
        string label = full[..k] + sep + "labels" + sep + full[(k + 8)..];
        return Path.ChangeExtension(label, ".txt");
    }

    /// <summary>The image and its boxes in its pixels (a bad label line names its file and line).</summary>
    public (RgbImage Image, List<Detection> Boxes) Load(string image)
    {
        var img = RgbImage.Load(image);
        return (img, YoloLabels.Read(LabelPath(image), Classes, img.Width, img.Height));
    }

    /// <summary>data.yaml for a set whose images/train and images/val sit beside it.</summary>
    public static string FormatYaml(IReadOnlyList<string> names)
    {
        var sb = new StringBuilder("# Ultralytics YOLO dataset (written by mt detect make-data)\npath: .\ntrain: images/train\nval: images/val\n");
        sb.Append(CultureInfo.InvariantCulture, $"nc: {names.Count}\nnames:\n");
        for (int i = 0; i < names.Count; i++) sb.Append(CultureInfo.InvariantCulture, $"  {i}: {names[i]}\n");
        return sb.ToString();
    }

    private static (Dictionary<string, string> Values, List<string> Names) ParseYaml(string path)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var names = new List<string>();
        bool inNames = false;
        int lineNo = 0;
        foreach (string raw in File.ReadLines(path))
        {
            lineNo++;
            string line = StripComment(raw).TrimEnd();
            if (line.Trim().Length == 0) continue;
            bool indented = char.IsWhiteSpace(line[0]);
            string t = line.Trim();
            if (indented && inNames)
            {
                if (t.StartsWith('-')) names.Add(Unquote(t[1..].Trim()));
                else
                {
                    int c = t.IndexOf(':');
                    if (c < 0 || !int.TryParse(t[..c], NumberStyles.Integer, CultureInfo.InvariantCulture, out int id) || id != names.Count)
                        throw new UserErrorException($"{path}:{lineNo}: expected `{names.Count}: name` in the names block, got '{t}'");
                    names.Add(Unquote(t[(c + 1)..].Trim()));
                }
                continue;
            }
            inNames = false;
            if (indented) continue; // a nested block we do not use (download scripts, ...)
            int colon = t.IndexOf(':');
            if (colon <= 0) throw new UserErrorException($"{path}:{lineNo}: expected `key: value`, got '{t}'");
            string key = t[..colon].Trim(), value = t[(colon + 1)..].Trim();
            if (key != "names") { values[key] = Unquote(value); continue; }
            if (value.Length == 0) { inNames = true; continue; }
            if (!value.StartsWith('[') || !value.EndsWith(']'))
                throw new UserErrorException($"{path}:{lineNo}: names: expected a list `[a, b]` or a block below, got '{value}'");
            names.AddRange(value[1..^1].Split(',').Select(s => Unquote(s.Trim())).Where(s => s.Length > 0));
        }
        return (values, names);
    }

    private static string StripComment(string s)
    {
        int k = s.IndexOf(" #", StringComparison.Ordinal);
        return s.TrimStart().StartsWith('#') ? "" : k >= 0 ? s[..k] : s;
    }

    private static string Unquote(string s) => s.Length >= 2 && (s[0] == '\'' || s[0] == '"') && s[^1] == s[0] ? s[1..^1] : s;
}
