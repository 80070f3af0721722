// nanoGPT's training step in TorchSharp (libtorch through .NET), the peer C# users compare ManagedTensor with
// first. The same model and loop as bench/torch_gpt_train.py and `ManagedTensor.Bench gpt-train`: pre-norm
// blocks, exact GELU, no biases, output head tied to the token embedding, AdamW (decay on 2-D weights only:
// two optimizers, one per group), warm-up + cosine learning rate, gradient clipping at 1.0; attention is
// scaled_dot_product_attention (libtorch 2.x has a fused CPU kernel, and nanoGPT takes it when present).
// Each step (batch sampling included) is timed alone; the median after 10 warm-up steps is reported, with the
// process's peak resident memory (VmHWM) at the end.
//
// Prints one line: "torchsharp shape=S threads=N iters=N ms_per_iter=... tokens_per_s=... final_loss=... peak_rss_mb=..."
// Usage: TorchSharpGptTrain [--threads N] [--iters N] [--shape small|big] [--data FILE]
using System.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

int threads = 2, iters = 200;
string shape = "small", dataPath = "data/tinyshakespeare.txt";
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--threads": threads = int.Parse(args[++i]); break;
        case "--iters": iters = int.Parse(args[++i]); break;
        case "--shape": shape = args[++i]; break;
        case "--data": dataPath = args[++i]; break;
        default: throw new ArgumentException($"unknown argument '{args[i]}' (expected --threads N, --iters N, --shape small|big, --data FILE)");
    }
}
// small: nanoGPT's CPU recipe (`mt train gpt`'s defaults); big: 6 layers x 384 (nanoGPT's GPU model) at block 256, batch 8.
var (nLayer, nHead, nEmbd, block, batch) = shape switch
{
    "small" => (4, 4, 128, 64, 12),
    "big" => (6, 6, 384, 256, 8),
    _ => throw new ArgumentException($"--shape {shape}: expected small or big"),
};
torch.set_num_threads(threads);
torch.manual_seed(1337);

string text = File.ReadAllText(dataPath);
var chars = text.Distinct().Order().ToArray();
var stoi = chars.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => (long)p.i);
var all = text.Select(c => stoi[c]).ToArray();
int nTrain = (int)(0.9 * all.Length);
var train = torch.tensor(all[..nTrain]);

var model = new Gpt(chars.Length, nLayer, nHead, nEmbd, block);
var named = model.named_parameters().ToList();
var decay = named.Where(p => p.parameter.dim() >= 2).Select(p => p.parameter).ToList();
var noDecay = named.Where(p => p.parameter.dim() < 2).Select(p => p.parameter).ToList();
var optimizers = new[]
{
    torch.optim.AdamW(decay, 1e-3, 0.9, 0.99, 1e-8, 0.1),
    torch.optim.AdamW(noDecay, 1e-3, 0.9, 0.99, 1e-8, 0.0),
};
var allParams = named.Select(p => p.parameter).ToList();

static double LearningRate(int it)
{
    const double lr = 1e-3, minLr = 1e-4;
    const int warmup = 100, decayIters = 2000;
    if (it < warmup) return lr * (it + 1) / (warmup + 1);
    if (it > decayIters) return minLr;
    double ratio = (double)(it - warmup) / (decayIters - warmup);
    return minLr + 0.5 * (1.0 + Math.Cos(Math.PI * ratio)) * (lr - minLr);
}

var times = new List<double>();
double finalLoss = 0;
var clock = new Stopwatch();
for (int it = 0; it < iters; it++)
{
    foreach (var opt in optimizers)
        foreach (var g in opt.ParamGroups) g.LearningRate = LearningRate(it);
    clock.Restart();
    using (var scope = torch.NewDisposeScope())
    {
        // get_batch: B random windows of block + 1 characters.
        var ix = torch.randint(nTrain - block, [batch], dtype: ScalarType.Int64);
        var rows = new Tensor[batch];
        var next = new Tensor[batch];
        for (int b = 0; b < batch; b++)
        {
            long start = ix[b].item<long>();
            rows[b] = train.narrow(0, start, block);
            next[b] = train.narrow(0, start + 1, block);
        }
        var x = torch.stack(rows);
        var y = torch.stack(next);
        var loss = model.forward(x, y);
        foreach (var opt in optimizers) opt.zero_grad();
        loss.backward();
        torch.nn.utils.clip_grad_norm_(allParams, 1.0);
        foreach (var opt in optimizers) opt.step();
        if (it % 10 == 0 || it == iters - 1) finalLoss = loss.item<float>(); // a host read every 10 steps, as nanoGPT's logging
    }
    times.Add(clock.Elapsed.TotalMilliseconds);
}
var steady = times.Skip(Math.Min(10, times.Count / 2)).Order().ToList();
double ms = steady[steady.Count / 2];
Console.WriteLine($"torchsharp shape={shape} threads={threads} iters={iters} ms_per_iter={ms:F2} tokens_per_s={batch * block / ms * 1000:F0} final_loss={finalLoss:F4} peak_rss_mb={PeakRssMb():F0}");

static double PeakRssMb()
{
    foreach (var line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith("VmHWM:")) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
    return double.NaN;
}

/// <summary>nanoGPT's GPT without biases or dropout (its CPU recipe's dropout is 0).</summary>
sealed class Gpt : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Embedding wte, wpe;
    private readonly ModuleList<Block> h;
    private readonly Parameter lnF;
    private readonly int nEmbd;

    public Gpt(int vocab, int nLayer, int nHead, int nEmbd, int block) : base("gpt")
    {
        this.nEmbd = nEmbd;
        wte = nn.Embedding(vocab, nEmbd);
        wpe = nn.Embedding(block, nEmbd);
        h = new ModuleList<Block>(Enumerable.Range(0, nLayer).Select(_ => new Block(nHead, nEmbd)).ToArray());
        lnF = nn.Parameter(torch.ones(nEmbd));
        RegisterComponents();
        using var noGrad = torch.no_grad();
        foreach (var (name, p) in named_parameters())
            if (p.dim() == 2)
                nn.init.normal_(p, 0.0, name.EndsWith("c_proj.weight") || name.EndsWith("mlp_proj.weight") ? 0.02 / Math.Sqrt(2 * nLayer) : 0.02);
    }

    public override Tensor forward(Tensor idx, Tensor targets)
    {
        long t = idx.shape[1];
        var x = wte.forward(idx) + wpe.forward(torch.arange(t));
        foreach (var b in h) x = b.forward(x);
        x = nn.functional.layer_norm(x, [nEmbd], lnF, null, 1e-5);
        var logits = nn.functional.linear(x, wte.weight!); // tied head: x wte^T
        return nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), targets.view(-1));
    }
}

sealed class Block : nn.Module<Tensor, Tensor>
{
    private readonly Parameter ln1, ln2;
    private readonly Linear c_attn, c_proj, c_fc, mlp_proj;
    private readonly int nHead, nEmbd;

    public Block(int nHead, int nEmbd) : base("block")
    {
        this.nHead = nHead;
        this.nEmbd = nEmbd;
        ln1 = nn.Parameter(torch.ones(nEmbd));
        ln2 = nn.Parameter(torch.ones(nEmbd));
        c_attn = nn.Linear(nEmbd, 3 * nEmbd, hasBias: false);
        c_proj = nn.Linear(nEmbd, nEmbd, hasBias: false);
        c_fc = nn.Linear(nEmbd, 4 * nEmbd, hasBias: false);
        mlp_proj = nn.Linear(4 * nEmbd, nEmbd, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1];
        var qkv = c_attn.forward(nn.functional.layer_norm(x, [nEmbd], ln1, null, 1e-5)).split(nEmbd, 2);
        var (q, k, v) = (Heads(qkv[0], b, t), Heads(qkv[1], b, t), Heads(qkv[2], b, t));
        var y = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        x = x + c_proj.forward(y.transpose(1, 2).contiguous().view(b, t, nEmbd));
        var hdn = nn.functional.gelu(c_fc.forward(nn.functional.layer_norm(x, [nEmbd], ln2, null, 1e-5)));
        return x + mlp_proj.forward(hdn);
    }

    private Tensor Heads(Tensor z, long b, long t) => z.view(b, t, nHead, nEmbd / nHead).transpose(1, 2);
}
