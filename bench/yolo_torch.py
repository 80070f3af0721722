#!/usr/bin/python3
"""YOLOv8 in plain PyTorch (1.13, /usr/bin/python3), written from Ultralytics' yolov8.yaml and its nn/modules
(Conv, Bottleneck, C2f, SPPF, Detect) and v8DetectionLoss, without Ultralytics: the PyTorch side of
bench/yolo_vs_torch.sh. Same layers, widths, depths and parameter count as ManagedTensor's YoloV8 (80 classes;
asserted, and printed for the script to compare with ours).

  --mode forward: eval mode, batch norm folded into the convs, torch.no_grad(): the head's outputs decoded to boxes
                  and class probabilities (Detect in eval mode), batch 1 by default;
  --mode train:   forward in training mode, the task-aligned assigner and the CIoU + DFL + BCE loss (Ultralytics'
                  gains 7.5 / 1.5 / 0.5, times the batch), backward, clip_grad_norm_(10), AdamW; batch 2.
Inputs are seeded uniform noise; the boxes are src/Models/Detection/Yolo/YoloSpeed.cs's. Each iteration is timed
alone; the figure is the median after the warm-up iterations. Prints one line like ours: ms_per_iter, images_per_s,
params, peak RSS.
  --device cuda:  everything (model, inputs, the loss's anchors and targets) is made on the GPU (the default device),
                  torch.cuda.synchronize() runs before each clock is read, and the line adds device_peak_mb
                  (torch.cuda.max_memory_allocated over the timed iterations): scripts/gpu_checks.sh BUNDLE OUT yolo.
"""
import argparse, math, resource, statistics, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

REG_MAX, NC, STRIDES = 16, 80, (8, 16, 32)
BOXES = [[(0, 100, 120, 300, 360), (5, 350, 200, 600, 500), (17, 40, 400, 180, 620)],
         [(2, 200, 150, 450, 420), (41, 10, 10, 120, 90)]]


class Conv(nn.Module):  # conv (no bias, padding k // 2) -> BN(eps 1e-3, momentum 0.03) -> SiLU
    def __init__(self, c1, c2, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def fuse(self):  # fold BN's eval affine map into the conv: w * g / sqrt(v + eps), b - m * g / sqrt(v + eps)
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        fused = nn.Conv2d(self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size, self.conv.stride, self.conv.padding, bias=True)
        fused.weight.data = self.conv.weight.data * scale.view(-1, 1, 1, 1)
        fused.bias.data = self.bn.bias.data - self.bn.running_mean * scale
        self.conv, self.bn = fused, nn.Identity()


class Bottleneck(nn.Module):
    def __init__(self, c, shortcut):
        super().__init__()
        self.cv1, self.cv2, self.add = Conv(c, c, 3), Conv(c, c, 3), shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    def __init__(self, c1, c2, n, shortcut):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        self.cv1, self.cv2 = Conv(c1, c1 // 2, 1), Conv(c1 // 2 * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class Detect(nn.Module):
    def __init__(self, nc, ch):
        super().__init__()
        c2, c3 = max(16, ch[0] // 4, 4 * REG_MAX), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * REG_MAX, 1)) for x in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        for a, b, s in zip(self.cv2, self.cv3, STRIDES):  # Ultralytics' bias_init
            a[-1].bias.data[:] = 1.0
            b[-1].bias.data[:] = math.log(5 / nc / (640 / s) ** 2)

    def forward(self, xs):
        return [torch.cat((self.cv2[i](x), self.cv3[i](x)), 1) for i, x in enumerate(xs)]


def make_anchors(h, w, offset=0.5):
    pts, strides = [], []
    for s in STRIDES:
        sy, sx = torch.meshgrid(torch.arange(h // s) + offset, torch.arange(w // s) + offset, indexing="ij")
        pts.append(torch.stack((sx, sy), -1).view(-1, 2))
        strides.append(torch.full((h // s * w // s, 1), float(s)))
    return torch.cat(pts), torch.cat(strides)


def dfl(box_logits):  # (N, 4 R, A) -> (N, 4, A): expected distance under each side's softmax over 0..R-1
    n, _, a = box_logits.shape
    return (box_logits.view(n, 4, REG_MAX, a).softmax(2) * torch.arange(REG_MAX, dtype=box_logits.dtype).view(1, 1, -1, 1)).sum(2)


class YoloV8(nn.Module):  # yolov8.yaml at width 0.25, depth 0.33 (yolov8n): channels 16, 32, 64, 128, 256
    def __init__(self, nc=NC, width=0.25, depth=0.33, max_ch=1024):
        super().__init__()
        ch = lambda c: math.ceil(min(c, max_ch) * width / 8) * 8
        d = lambda n: max(round(n * depth), 1) if n > 1 else n
        p1, p2, p3, p4, p5 = ch(64), ch(128), ch(256), ch(512), ch(1024)
        self.model = nn.ModuleList([
            Conv(3, p1, 3, 2), Conv(p1, p2, 3, 2), C2f(p2, p2, d(3), True), Conv(p2, p3, 3, 2), C2f(p3, p3, d(6), True),
            Conv(p3, p4, 3, 2), C2f(p4, p4, d(6), True), Conv(p4, p5, 3, 2), C2f(p5, p5, d(3), True), SPPF(p5, p5),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Identity(), C2f(p5 + p4, p4, d(3), False),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Identity(), C2f(p4 + p3, p3, d(3), False),
            Conv(p3, p3, 3, 2), nn.Identity(), C2f(p3 + p4, p4, d(3), False),
            Conv(p4, p4, 3, 2), nn.Identity(), C2f(p4 + p5, p5, d(3), False),
            Detect(nc, (p3, p4, p5))])
        self.nc = nc

    def forward(self, x):
        m = self.model
        p3 = m[4](m[3](m[2](m[1](m[0](x)))))
        p4 = m[6](m[5](p3))
        p5 = m[9](m[8](m[7](p4)))
        t4 = m[12](torch.cat((m[10](p5), p4), 1))
        o3 = m[15](torch.cat((m[13](t4), p3), 1))
        o4 = m[18](torch.cat((m[16](o3), t4), 1))
        o5 = m[21](torch.cat((m[19](o4), p5), 1))
        return m[22]([o3, o4, o5])

    def predict(self, x):  # (N, 4 + nc, A): cx, cy, w, h in pixels, then class probabilities
        out = self.forward(x)
        n = x.shape[0]
        y = torch.cat([o.view(n, o.shape[1], -1) for o in out], 2)
        anchors, strides = make_anchors(x.shape[2], x.shape[3])
        d = dfl(y[:, :4 * REG_MAX])
        a = anchors.t().unsqueeze(0)
        x1y1, x2y2 = a - d[:, :2], a + d[:, 2:]
        box = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides.t().unsqueeze(0)
        return torch.cat((box, y[:, 4 * REG_MAX:].sigmoid()), 1)

    def fuse(self):
        for mod in self.modules():
            if isinstance(mod, Conv):
                mod.fuse()
        return self


def bbox_ciou(box1, box2, eps=1e-7):  # CIoU of corner boxes (..., 4)
    b1_x1, b1_y1, b1_x2, b1_y2 = box1.chunk(4, -1)
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.chunk(4, -1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp(0) * (b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)).clamp(0)
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    cw, ch = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1), b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1)
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / (cw ** 2 + ch ** 2 + eps) + v * alpha)


@torch.no_grad()
def assign(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, topk=10, alpha=0.5, beta=6.0, eps=1e-9):
    """Ultralytics' TaskAlignedAssigner: anchors inside a box, metric score^alpha * CIoU^beta, top-k per box,
    one box per anchor (the highest overlap), targets scaled by the normalized metric."""
    bs, n_max = gt_bboxes.shape[:2]
    na, nc = pd_scores.shape[1], pd_scores.shape[2]
    lt, rb = gt_bboxes.view(-1, 1, 4).chunk(2, 2)
    mask_in_gts = torch.cat((anc_points[None] - lt, rb - anc_points[None]), 2).view(bs, n_max, na, -1).amin(3).gt_(eps)
    mask = (mask_in_gts * mask_gt).bool()
    overlaps = torch.zeros(bs, n_max, na)
    bbox_scores = torch.zeros(bs, n_max, na)
    ind0 = torch.arange(bs).view(-1, 1).expand(-1, n_max)
    bbox_scores[mask] = pd_scores[ind0, :, gt_labels.squeeze(-1).long()][mask]
    pd_b = pd_bboxes.unsqueeze(1).expand(-1, n_max, -1, -1)[mask]
    gt_b = gt_bboxes.unsqueeze(2).expand(-1, -1, na, -1)[mask]
    overlaps[mask] = bbox_ciou(gt_b, pd_b).squeeze(-1).clamp_(0)
    align_metric = bbox_scores.pow(alpha) * overlaps.pow(beta)
    _, topk_idxs = torch.topk(align_metric, topk, dim=-1, largest=True)
    topk_idxs.masked_fill_(~mask_gt.expand(-1, -1, topk).bool(), 0)
    count = torch.zeros(align_metric.shape, dtype=torch.int8)
    ones = torch.ones_like(topk_idxs[:, :, :1], dtype=torch.int8)
    for k in range(topk):
        count.scatter_add_(-1, topk_idxs[:, :, k:k + 1], ones)
    count.masked_fill_(count > 1, 0)
    mask_pos = count.to(align_metric.dtype) * mask_in_gts * mask_gt
    fg_mask = mask_pos.sum(-2)
    if fg_mask.max() > 1:
        multi = (fg_mask.unsqueeze(1) > 1).expand(-1, n_max, -1)
        is_max = torch.zeros(mask_pos.shape, dtype=mask_pos.dtype)
        is_max.scatter_(1, overlaps.argmax(1).unsqueeze(1), 1)
        mask_pos = torch.where(multi, is_max, mask_pos)
        fg_mask = mask_pos.sum(-2)
    target_gt_idx = mask_pos.argmax(-2)
    flat_idx = target_gt_idx + torch.arange(bs)[..., None] * n_max
    target_labels = gt_labels.long().flatten()[flat_idx].clamp_(0)
    target_bboxes = gt_bboxes.view(-1, 4)[flat_idx]
    target_scores = F.one_hot(target_labels, nc).float()
    target_scores = torch.where(fg_mask[:, :, None].repeat(1, 1, nc) > 0, target_scores, torch.zeros_like(target_scores))
    align_metric = align_metric * mask_pos
    pos_align = align_metric.amax(dim=-1, keepdim=True)
    pos_overlaps = (overlaps * mask_pos).amax(dim=-1, keepdim=True)
    norm = (align_metric * pos_overlaps / (pos_align + eps)).amax(-2).unsqueeze(-1)
    return target_bboxes, target_scores * norm, fg_mask.bool()


def detection_loss(feats, gts, h, w, nc=NC):  # Ultralytics' v8DetectionLoss
    bs = feats[0].shape[0]
    pred_distri, pred_scores = torch.cat([f.view(bs, nc + 4 * REG_MAX, -1) for f in feats], 2).split((4 * REG_MAX, nc), 1)
    pred_scores = pred_scores.permute(0, 2, 1).contiguous()
    pred_distri = pred_distri.permute(0, 2, 1).contiguous()
    anchor_points, stride_tensor = make_anchors(h, w)
    n_max = max(1, max(len(g) for g in gts))
    gt_labels, gt_bboxes = torch.zeros(bs, n_max, 1), torch.zeros(bs, n_max, 4)
    for b, g in enumerate(gts):
        for j, (c, x0, y0, x1, y1) in enumerate(g):
            gt_labels[b, j, 0] = c
            gt_bboxes[b, j] = torch.tensor([x0, y0, x1, y1])
    mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
    b, a, c = pred_distri.shape
    dist = pred_distri.view(b, a, 4, c // 4).softmax(3).matmul(torch.arange(REG_MAX, dtype=torch.float))
    lt, rb = dist.chunk(2, -1)
    pred_bboxes = torch.cat((anchor_points - lt, anchor_points + rb), -1)
    target_bboxes, target_scores, fg_mask = assign(pred_scores.detach().sigmoid(), pred_bboxes.detach() * stride_tensor,
                                                   anchor_points * stride_tensor, gt_labels, gt_bboxes, mask_gt)
    tss = max(target_scores.sum(), 1)
    cls = F.binary_cross_entropy_with_logits(pred_scores, target_scores, reduction="none").sum() / tss
    box = dfl_loss = torch.zeros(())
    if fg_mask.sum():
        tb = target_bboxes / stride_tensor
        weight = target_scores.sum(-1)[fg_mask].unsqueeze(-1)
        box = ((1.0 - bbox_ciou(pred_bboxes[fg_mask], tb[fg_mask])) * weight).sum() / tss
        x1y1, x2y2 = tb.chunk(2, -1)
        target = torch.cat((anchor_points - x1y1, x2y2 - anchor_points), -1).clamp_(0, REG_MAX - 1 - 0.01)[fg_mask]
        pd = pred_distri[fg_mask].view(-1, REG_MAX)
        tl = target.long()
        wl = tl + 1 - target
        ce = lambda t: F.cross_entropy(pd, t.view(-1), reduction="none").view(tl.shape)
        dfl_loss = ((ce(tl) * wl + ce(tl + 1) * (1 - wl)).mean(-1, keepdim=True) * weight).sum() / tss
    return (7.5 * box + 0.5 * cls + 1.5 * dfl_loss) * bs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("forward", "train"), default="forward")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=-1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--phases", action="store_true", help="train: also print process CPU ms per phase (forward, loss, backward, clip + AdamW)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = ap.parse_args()
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        sys.exit(f"--device {args.device}: expected cpu or cuda[:N]")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA device")
        torch.cuda.set_device(device)
        # every tensor the model and the loss make (parameters, anchors, targets, masks) on the GPU
        if not hasattr(torch, "set_default_device"):
            sys.exit(f"--device {args.device}: needs torch >= 2.0 (torch.set_default_device), this is {torch.__version__}")
        torch.set_default_device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batch = args.batch if args.batch > 0 else (1 if args.mode == "forward" else 2)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = YoloV8()
    params = sum(p.numel() for p in model.parameters())
    # Ultralytics' yolov8n summary for 80 classes: 3,157,200 parameters, 16 of them its frozen DFL conv (a fixed 0..15 here)
    assert params == 3_157_184, f"yolov8n has {params} parameters, expected 3,157,184"
    x = torch.rand(batch, 3, args.imgsz, args.imgsz)
    s = args.imgsz / 640
    gts = [[(c, x0 * s, y0 * s, x1 * s, y1 * s) for c, x0, y0, x1, y1 in BOXES[b % len(BOXES)]] for b in range(batch)]
    if args.mode == "forward":
        model.eval().fuse()
    else:
        model.train()
        decay = [p for n, p in model.named_parameters() if n.endswith("conv.weight") or (p.dim() == 4 and not n.endswith("bias"))]
        ids = {id(p) for p in decay}
        rest = [p for p in model.parameters() if id(p) not in ids]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    times, loss = [], float("nan")
    phase_ms = [0.0] * 4  # process CPU ms per phase over the timed iterations (--phases), as bench/StepPhases.cs
    cpu0 = 0.0
    for it in range(args.iters):
        if it == args.warmup:
            cpu0 = time.process_time()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
        sync()
        t0 = time.perf_counter()
        if args.mode == "forward":
            with torch.no_grad():
                model.predict(x).cpu().numpy()
        else:
            marks = [time.process_time()]
            out = model(x)
            sync()
            marks.append(time.process_time())
            l = detection_loss(out, gts, args.imgsz, args.imgsz)
            sync()
            marks.append(time.process_time())
            opt.zero_grad()
            l.backward()
            sync()
            marks.append(time.process_time())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            loss = l.item()
            sync()
            marks.append(time.process_time())
            if it >= args.warmup:
                for k in range(4):
                    phase_ms[k] += (marks[k + 1] - marks[k]) * 1000
        sync()
        times.append((time.perf_counter() - t0) * 1000)
        print(f"yolo {args.mode} iteration {it + 1}/{args.iters}: {times[-1]:.0f} ms", file=sys.stderr)
    timed = args.iters - args.warmup
    ms = statistics.median(times[args.warmup:])
    cpu_ms = (time.process_time() - cpu0) * 1000 / timed
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    on_gpu = f" device={device} device_peak_mb={torch.cuda.max_memory_allocated() / 2 ** 20:.0f}" if device.type == "cuda" else ""
    if args.phases and args.mode == "train":
        for name, v in zip(("forward", "loss + assigner", "backward", "clip + AdamW"), phase_ms):
            print(f"{v / timed:9.1f}  {name} (cpu ms per step)")
    print(f"pytorch mode={args.mode} model=yolov8n imgsz={args.imgsz} batch={batch} threads={torch.get_num_threads()} iters={timed} params={params} "
          f"ms_per_iter={ms:.1f} images_per_s={batch * 1000 / ms:.3f} loss={loss:.4f} peak_rss_mb={rss:.0f} cpu_ms_per_iter={cpu_ms:.1f}{on_gpu}")


if __name__ == "__main__":
    main()
