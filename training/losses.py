"""SAGE's losses: non-saturating GAN, R1, pose regression, top-k, stereo reprojection (SSIM + L1), and the
reconstruction terms of the multi-view synthetic data (multi-scale L1, class-balanced cross-entropy,
complementary labels)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sage_backend.cameras import FRONTAL_YAW, wrap_yaw


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic loss: softplus(D(fake)) + softplus(-D(real))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating: softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor, gamma: float) -> torch.Tensor:
    """0.5 * gamma * E|grad_x D(x)|^2 on real inputs (the inputs must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return 0.5 * gamma * grad.pow(2).flatten(1).sum(1).mean()


def pose_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(predicted, target)


def topk_fraction(step: int, interval: int = 2000, base: float = 0.99, minimum: float = 0.6) -> float:
    """Top-k training: the fraction of fakes kept, max(0.99^(step / 2000), 0.6)."""
    return max(base ** (step / interval), minimum)


def topk_indices(logits: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the ceil(fraction * B) fakes the discriminator finds most real."""
    k = max(1, math.ceil(fraction * logits.shape[0]))
    return torch.topk(logits, k, dim=0).indices


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 3) -> torch.Tensor:
    """Per-pixel SSIM (B, C, H, W) with a box window, as in monodepth/MVCGAN; inputs in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    pad = window // 2
    pool = lambda x: F.avg_pool2d(F.pad(x, [pad] * 4, mode="reflect"), window, 1)  # noqa: E731
    mu_a, mu_b = pool(a), pool(b)
    var_a = pool(a * a) - mu_a**2
    var_b = pool(b * b) - mu_b**2
    cov = pool(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).clamp(0, 1)


def reprojection_loss(warped: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """0.85 * (1 - SSIM) / 2 + 0.15 * L1 between the warped auxiliary RGB and the primary RGB, in [0, 1]."""
    per_pixel = 0.85 * (1 - ssim(warped, target)) / 2 + 0.15 * (warped - target).abs()
    mask = valid.expand_as(per_pixel)
    return (per_pixel * mask).sum() / mask.sum().clamp_min(1.0)


def multiscale_l1(prediction: torch.Tensor, target: torch.Tensor, scales: int, ink_weight: float = 1.0,
                  pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L1 over `scales` resolutions, each half the last (area pooling); scales=1 is plain L1.
    Pixels whose target is ink (darker than mid-grey) weigh `ink_weight` times more, as HED balances
    sparse edges: the loss then draws a stroke wherever ink is likelier than 1 / (1 + ink_weight).
    `pixel_weight` (B, 1, H, W), e.g. `class_balance_map`, multiplies that weight (pooled with the images).
    prediction, target (B, C, H, W) in [-1, 1]."""
    total = prediction.new_zeros(())
    for level in range(scales):
        if level:
            prediction, target = F.avg_pool2d(prediction, 2), F.avg_pool2d(target, 2)
            pixel_weight = F.avg_pool2d(pixel_weight, 2) if pixel_weight is not None else None
        weight = 1.0 + (ink_weight - 1.0) * (target.mean(1, keepdim=True) < 0).float()
        if pixel_weight is not None:
            weight = weight * pixel_weight
        total = total + ((prediction - target).abs() * weight).sum() / (weight.sum() * target.shape[1])
    return total / scales


def texture_energy_l1(prediction: torch.Tensor, target: torch.Tensor, window: int, scale: int = 1) -> torch.Tensor:
    """L1 between the local texture energy of two drawings: the mean absolute difference between 4-neighbours
    (the per-channel image gradient's L1 norm) of the images area-pooled by `scale`, averaged over `window` x
    `window` tiles of the pooled images. It asks for as much stroke texture as the target has in each tile and
    leaves its phase free, where a pixel L1 averages strokes drawn at random places (painterly brush texture)
    into a flat wash. At scale 1 the cheapest texture is a 2 px stripe pattern (measured: scan lines over the
    whole painterly drawing); pooled by 2 those vanish, and only texture at the brush's scale counts.
    prediction, target (B, C, H, W) with H and W divisible by window * scale; returns a scalar in grey levels
    per step ([-1, 1] images)."""
    if scale > 1:
        prediction, target = F.avg_pool2d(prediction, scale), F.avg_pool2d(target, scale)

    def energy(image: torch.Tensor) -> torch.Tensor:
        across = F.pad((image[..., :, 1:] - image[..., :, :-1]).abs(), (0, 1, 0, 0))
        down = F.pad((image[..., 1:, :] - image[..., :-1, :]).abs(), (0, 0, 0, 1))
        return F.avg_pool2d(across + down, window)
    return F.l1_loss(energy(prediction), energy(target))


def part_tone_l1(prediction: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, groups: list[list[int]],
                 min_pixels: int = 4) -> torch.Tensor:
    """L1 between the mean tone of each label group in two drawings: per image and group of label ids `groups`
    covering at least `min_pixels`, |mean of prediction - mean of target| over the group's pixels, averaged
    over those (0 when none). Why: a pixel L1 draws the median, and an iris at a place a few pixels uncertain
    has a white median: pencil eyes came out white almonds at 0.67x the drawings' eye-to-skin contrast, even on
    the training photos (docs/training.md, demo model v3.4). The mean leaves the strokes' places free and asks
    for their amount. prediction, target (B, C, H, W); labels (B, H, W) int ids."""
    masks = torch.stack([torch.isin(labels, torch.tensor(ids, device=labels.device)) for ids in groups], 1).to(prediction)
    pixels = masks.sum((2, 3))  # (B, G)
    grey = lambda image: torch.einsum("bghw,bhw->bg", masks, image.mean(1)) / pixels.clamp_min(1)  # noqa: E731
    present = (pixels >= min_pixels).to(prediction)
    return ((grey(prediction) - grey(target)).abs() * present).sum() / present.sum().clamp_min(1)


def part_histogram_l1(prediction: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, groups: list[list[int]],
                      min_pixels: int = 4) -> torch.Tensor:
    """Histogram loss (Risser et al. 2017, "Stable and controllable neural texture synthesis and style transfer using
    histogram losses") inside each face part: per image, channel and group of label ids `groups` covering at least
    `min_pixels`, the mean |sorted prediction - sorted target| over the group's pixels, the 1-D Wasserstein-1
    distance between their tones; averaged over those (0 when none). prediction, target (B, C, H, W); labels
    (B, H, W) int ids, the same for both, so each sort has the same count.

    Why: where the data puts an iris a few pixels to either side, a pixel L1 draws the white median and
    `part_tone_l1` asks only for the mean, which a flat grey meets. Sorted tones ask for the share of dark pixels,
    wherever they go."""
    total, count = prediction.new_zeros(()), 0
    for ids in groups:
        masks = torch.isin(labels, torch.tensor(ids, device=labels.device))
        for b in torch.nonzero(masks.flatten(1).sum(1) >= min_pixels).flatten().tolist():
            drawn = prediction[b][:, masks[b]].sort(dim=1).values
            wanted = target[b][:, masks[b]].sort(dim=1).values
            total = total + (drawn - wanted).abs().mean()
            count += 1
    return total / max(count, 1)


def class_weights(labels: torch.Tensor, exponent: float, classes: int) -> torch.Tensor:
    """(classes,) weights, each class's pixel share in `labels` to the power -exponent (inverse-frequency
    weighting as in SegNet's median-frequency balancing, softened by the exponent; 0.5 weighs a brow at 0.3%
    of the pixels 10x a skin pixel at 30%). Classes absent from `labels` get the largest weight, unused."""
    counts = torch.bincount(labels.flatten(), minlength=classes).float()
    return (counts / counts.sum()).clamp_min(1.0 / counts.sum()).pow(-exponent)


def class_balance_map(labels: torch.Tensor, exponent: float, classes: int, balanced_views: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) per-pixel weights for a pixel loss: `class_weights` over the balanced views' pixels, each
    such view's map scaled to mean 1 (so every view weighs the same); 1 on the other views.
    labels (B, H, W) int64; balanced_views (B,) bool."""
    weight = torch.ones(labels.shape, device=labels.device)
    if exponent > 0 and balanced_views.any():
        chosen = labels[balanced_views]
        balanced = class_weights(chosen, exponent, classes).to(labels.device)[chosen]
        weight[balanced_views] = balanced / balanced.mean((1, 2), keepdim=True)
    return weight.unsqueeze(1)


def balanced_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, exponent: float, classes: int,
                           balanced_views: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy whose classes weigh `class_weights` (this batch's shares ** -exponent), normalised over
    the pixels (torch's weighted mean): 0 is plain cross-entropy. Thin face parts otherwise cost almost
    nothing to lose. `balanced_views` (B,) bool: only these views are balanced, the rest get plain
    cross-entropy, and the two means are averaged per view.
    logits (B, classes, H, W); labels (B, H, W) int64 in [0, classes)."""
    if exponent == 0 or (balanced_views is not None and not balanced_views.any()):
        return F.cross_entropy(logits, labels)
    if balanced_views is not None and not balanced_views.all():
        share = balanced_views.float().mean()
        return (share * balanced_cross_entropy(logits[balanced_views], labels[balanced_views], exponent, classes)
                + (1 - share) * F.cross_entropy(logits[~balanced_views], labels[~balanced_views]))
    return F.cross_entropy(logits, labels, weight=class_weights(labels, exponent, classes).to(logits.dtype))


def complementary_label_loss(logits: torch.Tensor, forbidden: torch.Tensor) -> torch.Tensor:
    """-log(1 - sum of the forbidden classes' softmax), the pixel mean: each pixel is told only which classes
    it is not (learning from complementary labels, Ishida et al. NeurIPS 2017; "negative learning" in NLNL,
    Kim et al. ICCV 2019). Computed as -logsumexp of the allowed log-probabilities, stable when the forbidden
    mass is near 1. logits (B, C, H, W); forbidden (B, C) bool, at least one class allowed per view."""
    log_p = F.log_softmax(logits, 1)
    allowed = log_p.masked_fill(forbidden[:, :, None, None], -math.inf)
    return (-allowed.logsumexp(1)).clamp_min(0.0).mean()  # >= 0 but for rounding (a -0.0 in the logs)


def front_facing(yaw: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the views within 90 degrees of frontal, where the class-balanced terms (`semantic_balance`,
    `drawing_balance`) apply; back views keep plain ones. Balance weights from a face-heavy batch would
    make face labels painted on a back view's hair cheap: measured, 0.25 on every view raised the
    back-half frames with a face part from 0.19 to 0.35 (docs/training.md)."""
    return (wrap_yaw(yaw) - FRONTAL_YAW).abs() <= math.pi / 2

