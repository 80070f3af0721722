namespace ManagedTensor.Nn;

/// <summary>
/// Images to a sequence of patches and back (ViT, DiT). An image (N, C, H, W) with p x p patches becomes
/// (N, T, p*p*C), T = (H/p) * (W/p) tokens in row-major patch order, each token's values in (p, q, C) order, the
/// order DiT's unpatchify reads its final layer in (x.reshape(N, h, w, p, p, C), einsum "nhwpqc->nchpwq").
/// Both are views and one copy, so their gradients are the inverse rearrangement.
/// </summary>
public static class Patchify
{
    public static Tensor ToPatches(Tensor x, int p) // (N, C, H, W) -> (N, h*w, p*p*C)
    {
        if (x.Rank != 4 || p < 1 || x.Shape[2] % p != 0 || x.Shape[3] % p != 0)
            throw new ArgumentException($"Patchify: image {x.Describe()} must be (N, C, H, W) with H and W multiples of the patch size {p}");
        int n = x.Shape[0], c = x.Shape[1], h = x.Shape[2] / p, w = x.Shape[3] / p;
        return x.Reshape(n, c, h, p, w, p)      // (N, C, h, p, w, q)
            .Permute(0, 2, 4, 3, 5, 1)          // (N, h, w, p, q, C)
            .Reshape(n, h * w, p * p * c);
    }

    public static Tensor FromPatches(Tensor x, int p, int channels, int height, int width) // (N, h*w, p*p*C) -> (N, C, H, W)
    {
        int h = height / p, w = width / p;
        if (x.Rank != 3 || height % p != 0 || width % p != 0 || x.Shape[1] != h * w || x.Shape[2] != p * p * channels)
            throw new ArgumentException($"Unpatchify: tokens {x.Describe()} must be (N, {h * w}, {p * p * channels}) for {channels} x {height} x {width} images in {p} x {p} patches");
        int n = x.Shape[0];
        return x.Reshape(n, h, w, p, p, channels)  // (N, h, w, p, q, C)
            .Permute(0, 5, 1, 3, 2, 4)             // (N, C, h, p, w, q)
            .Reshape(n, channels, height, width);
    }
}
