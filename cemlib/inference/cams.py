"""Grad-CAM++ maps for the four-view fusion network (the paper's Figs. 5 and 6) and the pointing game.

The fusion network runs its one encoder once on the (B * 4) batch of views, so a hook on a layer of the
encoder sees every view in a single call: its output is (B * 4, K, h, w) and the gradient of one breast's
score with respect to it holds, slice by slice, each view's own gradient. Grad-CAM++ weights are computed
per slice, which gives a correct map for each view although the weights are shared (hooks that keep only a
layer's first call, as the `grad-cam` package does, would see a single view if the encoder ran per view).

Grad-CAM++ (Chattopadhay et al., WACV 2018, eq. 19, with the ReLU of eq. 7) for activations A_k and the
gradient g_k of the score:
    alpha_k(ij) = g^2 / (2 g^2 + sum_ab A_k(ab) g^3)   (0 where g = 0)
    w_k = sum_ij alpha_k(ij) relu(g_k(ij)),   map = relu(sum_k w_k A_k)
then, as the `grad-cam` package does, min-max scaled, resized bilinearly to the input and min-max scaled
again, so that maps lie in [0, 1].

Score of a breast ("malignant" target): its malignancy log-odds log p(malignant) - log p(benign) from
`breast_logprob`; for mf_concat this is the malignant logit minus the benign logit. "benign" negates it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from copy import deepcopy as copy_module

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from scipy import ndimage
from torch import nn

from cemlib.core.views import SIDES, VIEW_ORDER, VIEWS, view_index
from cemlib.model.networks import FusionNet, ImageClassifier, ViewEncoder, malignant_probability

TARGETS = ("malignant", "benign")
_EPS_ALPHA = 1e-6  # as in the grad-cam package, so that both give the same maps
_EPS_SCALE = 1e-7


#: Map size (H, W) of the paper's Grad-CAM++ layer: VGG16's last convolutional block at 512 x 256 input.
PAPER_MAP = (32, 16)
#: The paper's input size (H, W).
PAPER_INPUT = (512, 256)
#: Inputs smaller than the paper's take the deepest map of half the input's size (the second block). At
#: 128 x 64 its maps peaked inside the lesion in 0.94 of the validation views over the smoke reference's
#: five training seeds, against 0.70 for the 32 x 16 map of the paper's cell size and 0.96 for the first
#: block; with the weights randomised (test views of seeds 0 and 1) they still peaked there in 0.25 of the
#: views at the first block and 0.07 at the second, so the second is the finest map that shows the model
#: rather than the image (docs/training.md).
SMALL_INPUT_DIVISOR = 2


def map_size_for(input_size: Sequence[int]) -> tuple[int, int]:
    """The smallest Grad-CAM++ map kept for an input of this size (H, W): the paper's below its input size,
    half the input for smaller ones."""
    height, width = int(input_size[0]), int(input_size[1])
    if height >= PAPER_INPUT[0] and width >= PAPER_INPUT[1]:
        return PAPER_MAP
    return max(1, height // SMALL_INPUT_DIVISOR), max(1, width // SMALL_INPUT_DIVISOR)


def default_target_layer(encoder: ViewEncoder, min_map: tuple[int, int] | None = None) -> nn.Module:
    """The deepest ReLU of the VGG trunk whose map is at least `min_map` (default: `map_size_for` the
    encoder's input size).

    At the paper's 512 x 256 this is the last convolutional block's output (32 x 16), as in the paper.
    Smaller inputs get the second block's (64 x 32 at 128 x 64), whose maps point at the lesion where the
    paper's cell size (32 x 16 there) or the last block (8 x 4) do not.
    """
    height, width = encoder.input_size
    min_map = map_size_for(encoder.input_size) if min_map is None else min_map
    relus, chosen = [], None
    for module in encoder.features:
        if isinstance(module, nn.MaxPool2d):
            height, width = height // 2, width // 2
        elif isinstance(module, nn.ReLU):
            relus.append(module)
            if height >= min_map[0] and width >= min_map[1]:
                chosen = module
    return chosen if chosen is not None else relus[0]


def randomised_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of `model` with every layer re-initialised (weights and batch-norm statistics), in eval mode:
    the model-randomisation check of a saliency method (Adebayo et al., NeurIPS 2018), whose maps should
    stop pointing at what the trained model's maps point at."""
    copy = copy_module(model)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in copy.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):  # batch norm resets its running statistics too
                reset()
    finally:
        torch.random.set_rng_state(generator_state)
    return copy.eval()


@contextlib.contextmanager
def _recording(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record every output of `layer` during the block (a layer may run more than once per forward)."""
    outputs: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    try:
        yield outputs
    finally:
        handle.remove()


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Evaluation mode inside the block (BN running statistics, no dropout), the previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def gradcam_plusplus_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights (N, K) from activations and score gradients (N, K, h, w)."""
    g2 = grads.pow(2)
    g3 = g2 * grads
    sum_a = activations.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + _EPS_ALPHA)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (alpha * grads.clamp(min=0)).sum(dim=(2, 3))


def gradcam_plusplus_raw(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Low-resolution Grad-CAM++ maps (N, h, w) = relu(sum_k w_k A_k), before any scaling."""
    weights = gradcam_plusplus_weights(activations, grads)
    return (weights[:, :, None, None] * activations).sum(dim=1).clamp(min=0)


def _min_max(maps: torch.Tensor) -> torch.Tensor:
    """Per-map (x - min) / (max + eps), the grad-cam package's scaling (all-zero maps stay zero)."""
    flat = maps.flatten(1)
    shifted = flat - flat.min(dim=1, keepdim=True).values
    return (shifted / (_EPS_SCALE + shifted.max(dim=1, keepdim=True).values)).view_as(maps)


def scale_to_input(raw: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Raw maps (N, h, w) -> (N, H, W) in [0, 1]: min-max, bilinear resize (half-pixel centres), min-max."""
    scaled = _min_max(raw)
    resized = F.interpolate(scaled[:, None], size=(int(size[0]), int(size[1])), mode="bilinear",
                            align_corners=False)[:, 0]
    return _min_max(resized.clamp(min=0))


def _cams_for_scores(
    model: nn.Module,
    x: torch.Tensor,
    layer: nn.Module,
    scores: Sequence[Callable[[object], torch.Tensor]],
) -> tuple[list[torch.Tensor], object]:
    """For each score function (outputs -> per-sample scores), Grad-CAM++ maps (N_layer, H, W) in [0, 1].

    Also returns the model's outputs (detached) from the same forward pass.
    """
    device = next(model.parameters()).device
    x = x.detach().to(device=device, dtype=torch.float32).requires_grad_(True)
    maps = []
    with _eval_mode(model), torch.enable_grad(), _recording(layer) as recorded:
        outputs = model(x)
        if not recorded:
            raise ValueError(f"the target layer {layer} did not run in the model's forward pass")
        for index, score_fn in enumerate(scores):
            keep = index < len(scores) - 1
            total = score_fn(outputs).sum()
            grads = torch.autograd.grad(total, recorded, retain_graph=keep, allow_unused=True)
            grads = [torch.zeros_like(a) if g is None else g for a, g in zip(recorded, grads, strict=True)]
            activations = torch.cat([a.detach() for a in recorded]).float()
            raw = gradcam_plusplus_raw(activations, torch.cat(grads).float())
            maps.append(scale_to_input(raw, x.shape[-2:]).cpu())
    if isinstance(outputs, dict):
        return maps, {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in outputs.items()}
    return maps, outputs.detach()


def image_cams(
    model: ImageClassifier, x: torch.Tensor, target_class: int = 1, layer: nn.Module | None = None
) -> np.ndarray:
    """Grad-CAM++ of a single-image classifier for the logit of `target_class`: (B, C, H, W) -> (B, H, W)."""
    layer = layer or default_target_layer(model.encoder)
    (maps,), _ = _cams_for_scores(model, x, layer, [lambda logits: logits[:, target_class]])
    return maps.numpy()


def _breast_score(side: str, target: str) -> Callable[[dict], torch.Tensor]:
    """Per-exam score of one breast: its malignancy log-odds (negated for the benign target)."""
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; expected one of {SIDES}")
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
    s = SIDES.index(side)
    sign = 1.0 if target == "malignant" else -1.0

    def score(outputs: dict) -> torch.Tensor:
        lp = outputs["breast_logprob"]
        return sign * (lp[:, s, 1] - lp[:, s, 0])

    return score


def fusion_cams(
    model: FusionNet,
    x: torch.Tensor,
    sides: Sequence[str] = SIDES,
    target: str = "malignant",
    layer: nn.Module | None = None,
) -> dict[str, np.ndarray]:
    """Grad-CAM++ of each breast's score on every view: x (B, 4, C, H, W) -> {side: (B, 4, H, W) in [0, 1]}.

    Views that do not influence a breast's score (the other breast under fusion "none") get all-zero maps.
    """
    return _fusion_cams_and_outputs(model, x, sides, target, layer)[0]


def _fusion_cams_and_outputs(
    model: FusionNet, x: torch.Tensor, sides: Sequence[str], target: str, layer: nn.Module | None
) -> tuple[dict[str, np.ndarray], dict]:
    """fusion_cams plus the model's outputs of the same forward pass."""
    if not isinstance(model, FusionNet):
        raise TypeError(f"fusion_cams needs a FusionNet, got {type(model).__name__}; use image_cams")
    model.check_input(x)
    layer = layer or default_target_layer(model.encoder)
    maps, outputs = _cams_for_scores(model, x, layer, [_breast_score(side, target) for side in sides])
    batch = x.shape[0]
    by_side = {
        side: m.reshape(batch, len(VIEW_ORDER), *m.shape[-2:]).numpy()
        for side, m in zip(sides, maps, strict=True)
    }
    return by_side, outputs


def explain_exam(model: FusionNet, x: torch.Tensor, layer: nn.Module | None = None) -> dict:
    """One exam (4, C, H, W): malignancy probability per side, maps per side and each view's own-breast map.

    Returns {"scores": {side: float}, "cams": {side: (4, H, W)}, "own": (4, H, W)}, ready for plot_exam_cams.
    """
    if x.ndim != 4:
        raise ValueError(f"explain_exam expects one exam (4, C, H, W), got shape {tuple(x.shape)}")
    by_side, outputs = _fusion_cams_and_outputs(model, x[None], SIDES, "malignant", layer)
    probs = malignant_probability(outputs)[0].cpu().tolist()
    cams = {side: by_side[side][0] for side in SIDES}
    return {"scores": dict(zip(SIDES, probs, strict=True)), "cams": cams, "own": own_breast_maps(cams)}


def cam_for_exam(
    model: FusionNet, x: torch.Tensor, side: str, target: str = "malignant", layer: nn.Module | None = None
) -> np.ndarray:
    """Maps (4, H, W) one per view in VIEW_ORDER, for one breast's score; x is one exam (4, C, H, W)."""
    if x.ndim != 4:
        raise ValueError(f"cam_for_exam expects one exam (4, C, H, W), got shape {tuple(x.shape)}")
    return fusion_cams(model, x[None], sides=(side,), target=target, layer=layer)[side][0]


def own_breast_maps(cams_by_side: dict[str, np.ndarray]) -> np.ndarray:
    """(4, H, W): each view's map for its own breast's score, from per-side fusion_cams/cam_for_exam maps."""
    return np.stack([cams_by_side[key[0]][..., i, :, :] for i, key in enumerate(VIEW_ORDER)], axis=-3)


def _disk(radius: int) -> np.ndarray:
    """Boolean disk structuring element of the given radius in pixels."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return xx**2 + yy**2 <= radius**2


def pointing_hits(cams: np.ndarray, masks: np.ndarray, tolerance: int = 0) -> np.ndarray:
    """Per map: whether its maximum falls inside the lesion mask (grown by `tolerance` pixels).

    cams and masks are (N, H, W); a tie of maxima counts as a hit if any tied pixel is inside.
    """
    cams, masks = np.asarray(cams, dtype=np.float64), np.asarray(masks).astype(bool)
    if cams.ndim == 2:
        cams, masks = cams[None], masks[None]
    if cams.shape != masks.shape:
        raise ValueError(f"cams {cams.shape} and masks {masks.shape} must have the same shape (N, H, W)")
    empty = [i for i, m in enumerate(masks) if not m.any()]
    if empty:
        raise ValueError(f"lesion masks {empty} are empty: the pointing game needs a lesion in every mask")
    hits = np.zeros(len(cams), dtype=bool)
    for i, (cam, mask) in enumerate(zip(cams, masks, strict=True)):
        if tolerance > 0:
            mask = ndimage.binary_dilation(mask, structure=_disk(tolerance))
        peaks = cam == cam.max()
        hits[i] = bool((peaks & mask).any()) and cam.max() > 0
    return hits


def pointing_game(cams: np.ndarray, masks: np.ndarray, tolerance: int = 0) -> float:
    """Share of maps whose maximum falls inside the lesion mask (Zhang et al.'s pointing game)."""
    return float(pointing_hits(cams, masks, tolerance).mean())


#: Smoothing (pixels) of the brightest-point baseline, so one noisy pixel does not win.
BRIGHTEST_SIGMA = 2.0


def brightest_point_maps(images: np.ndarray, breasts: np.ndarray, sigma: float = BRIGHTEST_SIGMA
                         ) -> np.ndarray:
    """A no-model baseline for the pointing game: each image smoothed, zero outside its breast.

    Scored with `pointing_hits` it asks whether the brightest (e.g. DES) point of the breast lies in the
    lesion: a map whose peak does no better than this has learnt nothing a threshold could not find.
    """
    images, breasts = np.asarray(images, dtype=np.float64), np.asarray(breasts).astype(bool)
    planes = images.reshape(-1, *images.shape[-2:])
    smoothed = np.stack([ndimage.gaussian_filter(plane, sigma) for plane in planes])
    smoothed = smoothed.reshape(images.shape) - smoothed.min() + 1.0  # positive inside, so the peak counts
    return np.where(breasts, smoothed, 0.0)


def random_point_hit_rate(breasts: np.ndarray, masks: np.ndarray) -> float:
    """The pointing game of a uniformly random point in the breast: the mean lesion share of its area."""
    breasts, masks = np.asarray(breasts).astype(bool), np.asarray(masks).astype(bool)
    inside = (masks & breasts).reshape(len(masks), -1).sum(axis=1)
    area = breasts.reshape(len(breasts), -1).sum(axis=1)
    if (area == 0).any():
        raise ValueError("every view needs a breast region to place a random point in")
    return float(np.mean(inside / area))


#: The overlay's colour map: perceptually uniform, dark where the map is low, and readable in grey.
CAM_COLOURS = "inferno"


def cam_overlay(heat: np.ndarray, cmap: str = CAM_COLOURS, alpha: float = 0.75) -> np.ndarray:
    """An RGBA image of a map in [0, 1]: colour from `cmap`, opacity rising with the value up to `alpha`
    (transparent at 0), to draw over the grey image it explains."""
    values = np.clip(np.asarray(heat, dtype=np.float64), 0.0, 1.0)
    rgba = colormaps[cmap](values)
    rgba[..., 3] = alpha * values
    return rgba


def plot_exam_cams(
    x: torch.Tensor | np.ndarray,
    cams: np.ndarray,
    scores: dict[str, float] | None = None,
    alpha: float = 0.75,
    mirror_right: bool = False,
    cmap: str = CAM_COLOURS,
) -> Figure:
    """Figure like the paper's Figs. 5/6: per breast, LE, DES and the Grad-CAM++ overlay for CC and MLO.

    x: one exam (4, C, H, W) in VIEW_ORDER (channel 0 LE, channel 1 DES when C = 2); cams: (4, H, W), each
    view's map (e.g. own_breast_maps). scores: optional malignancy probability per side for the column titles.
    The overlay is drawn on DES when present (where enhancement shows), on LE otherwise, in a perceptually
    uniform colour map (`cmap`, inferno) whose opacity grows with the map's value up to `alpha`: where the
    map is low the image shows through, so the overlay never hides the tissue it explains. mirror_right
    flips right-breast views back to the radiological orientation. Titles carry no patient identifier.
    """
    images = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    cams = np.asarray(cams)
    if images.ndim != 4 or images.shape[0] != len(VIEW_ORDER):
        raise ValueError(f"x must be one exam (4, C, H, W) in {VIEW_ORDER}, got shape {images.shape}")
    if cams.shape != (len(VIEW_ORDER), *images.shape[-2:]):
        expected = (len(VIEW_ORDER), *images.shape[-2:])
        raise ValueError(f"cams must be (4, H, W) = {expected}, got {cams.shape}")
    channels = ["LE", "DES"][: images.shape[1]]
    columns = [*channels, "Grad-CAM++"]
    # Constrained layout leaves room for a caller's suptitle above the first row and for the colour bar.
    fig = Figure(figsize=(1.6 * len(SIDES) * len(columns) + 0.8, 3.0 * len(VIEWS)), layout="constrained")
    axes = fig.subplots(len(VIEWS), len(SIDES) * len(columns), squeeze=False)
    for s, side in enumerate(SIDES):
        for r, view in enumerate(VIEWS):
            i = view_index(side, view)
            panels = [images[i, c] for c in range(len(channels))]
            heat = cams[i]
            if mirror_right and side == "R":
                panels, heat = [p[:, ::-1] for p in panels], heat[:, ::-1]
            for c, name in enumerate(columns):
                ax = axes[r, s * len(columns) + c]
                ax.imshow(panels[min(c, len(panels) - 1)], cmap="gray", vmin=0, vmax=1)
                if name == "Grad-CAM++":
                    ax.imshow(cam_overlay(heat, cmap, alpha))
                title = f"{side}{view} {name}"
                if scores is not None and r == 0 and c == 0:
                    title = f"p(malignant) {side} = {scores[side]:.2f}\n{title}"
                ax.set_title(title, fontsize=8)
                ax.axis("off")
    scale = ScalarMappable(norm=Normalize(0, 1), cmap=cmap)
    fig.colorbar(scale, ax=axes, location="right", shrink=0.7,
                 label="Grad-CAM++ (scaled 0-1 per view; more opaque where higher)")
    return fig
