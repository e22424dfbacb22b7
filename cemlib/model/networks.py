"""The networks of Qian et al.: one VGG16-BN view encoder shared over the four views, and the fusion heads.

Input layout (every patient-level tensor in cemlib):
    x: float (B, 4, C, H, W); the view axis follows VIEW_ORDER = (LCC, LMLO, RCC, RMLO);
    C = 2 for CEM inputs (channel 0 LE, channel 1 DES) or 1 for LE-only inputs;
    H x W = 512 x 256 in the paper.
    Right-breast images are already mirrored by preprocessing, so both breasts face the same way.

Output of FusionNet.forward, a dict:
    breast_logprob: (B, 2, 2)  log-probabilities, axis 1 = side (L, R), axis 2 = class (benign, malignant).
    image_logprob:  (B, 4, 2)  per-view log-probabilities in VIEW_ORDER for "none" and "left_right";
                    None for the multi-feature fusions, which only score breasts.

Fusions (d = the encoder's feature size, 512 in the paper):
    none        each view alone: FC(d -> 2) (the stage-1 classifier); breast probability = mean of the
                probability vectors of its CC and MLO views.
    left_right  each view with the contralateral breast's same view: FC([view, contra] 2d -> 2), one FC
                shared over the four views; breast probability = mean over its CC and MLO views.
    mf_average  per breast: FC_CC([CC ipsi, CC contra]) + softmax and
                FC_MLO([MLO ipsi, MLO contra]) + softmax, the two probability vectors averaged.
    mf_concat   per breast: FC([CC ipsi, CC contra, MLO ipsi, MLO contra] 4d -> 2) + softmax
                (2048 -> 2 at d = 512); left = [LCC, RCC, LMLO, RMLO], right = [RCC, LCC, RMLO, LMLO].
    The fusion FC weights are shared by both breasts, so swapping the left and right inputs swaps the outputs.

The encoder runs once on the (B * 4) batch of views: the four views share one set of weights by construction.
Weights start from PyTorch's default initialisation (as the authors' code) unless `pretrained` is given.
Stage 1 trains ImageClassifier(encoder); its state dict ("encoder.*", "classifier.*") loads into any
FusionNet's encoder, and for fusion "none" into its classifier as well (same module names).
A network's `Architecture` record is stored in checkpoints as a dict (`arch_of`); `model_from_arch`
rebuilds the network from either.
"""

from __future__ import annotations

import math
import os
import urllib.error
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from cemlib.core.settings import ModelSettings
from cemlib.core.views import SIDES, VIEW_ORDER, contralateral, view_index
from cemlib.core.vocab import FUSIONS, IMAGE_MODEL, PAPER_INPUT_SIZE

#: Arch keys that decide the encoder's weights' shapes (and so whether an encoder state dict fits).
ENCODER_ARCH_KEYS = ("in_channels", "width", "global_pool", "head", "input_size", "pool", "standardise")
ARCH_KEYS = ("fusion", *ENCODER_ARCH_KEYS, "dropout")
#: Arch keys newer than some checkpoints, and the value those checkpoints were built with.
ARCH_DEFAULTS: dict[str, Any] = {"pool": "avg", "standardise": False}
#: Global pooling of the trunk's map when global_pool is set: the mean (the usual head) or the maximum,
#: which keeps a small focal finding's response from being averaged away over the whole breast.
POOLS: dict[str, type[nn.Module]] = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}
#: The settings tree's model defaults (the paper's network): one place for every default below.
MODEL_DEFAULTS = ModelSettings()


@dataclass(frozen=True)
class Architecture:
    """What shapes a network: its fusion (or IMAGE_MODEL for the stage-1 classifier), input channels and
    the encoder's options. Checkpoints store it as a plain dict (`as_dict`); `from_dict` reads one back."""

    fusion: str
    in_channels: int
    width: float = MODEL_DEFAULTS.width
    global_pool: bool = MODEL_DEFAULTS.global_pool
    head: tuple[int, ...] = MODEL_DEFAULTS.head
    dropout: float = MODEL_DEFAULTS.dropout
    input_size: tuple[int, ...] = PAPER_INPUT_SIZE
    pool: str = MODEL_DEFAULTS.pool
    standardise: bool = MODEL_DEFAULTS.standardise

    @classmethod
    def from_dict(cls, arch: Mapping[str, Any] | Architecture) -> Architecture:
        """The record of a checkpoint's arch dict, numbers typed (older checkpoints: ARCH_DEFAULTS)."""
        if isinstance(arch, Architecture):
            return arch
        missing = [k for k in ARCH_KEYS if k not in arch and k not in ARCH_DEFAULTS]
        if missing:
            raise ValueError(f"arch dict lacks {missing}; expected keys {ARCH_KEYS}")
        return cls(
            fusion=str(arch["fusion"]),
            in_channels=int(arch["in_channels"]),
            width=float(arch["width"]),
            global_pool=bool(arch["global_pool"]),
            head=tuple(int(h) for h in arch["head"]),
            dropout=float(arch["dropout"]),
            input_size=tuple(int(s) for s in arch["input_size"]),
            pool=str(arch.get("pool", ARCH_DEFAULTS["pool"])),
            standardise=bool(arch.get("standardise", ARCH_DEFAULTS["standardise"])),
        )

    def as_dict(self) -> dict[str, Any]:
        """The plain dict checkpoints store (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def encoder_options(self) -> dict[str, Any]:
        """build_encoder's keyword arguments (everything but the fusion)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "fusion"}
VGG16_CFG = "D"
INPUT_NAMES = {1: "LE only", 2: "LE + DES"}

# Indices into the VIEW_ORDER axis, derived from the names so that a change of order cannot go unnoticed.
_CONTRA = [view_index(contralateral(k[0]), k[1:]) for k in VIEW_ORDER]
_SIDE_OF_VIEW = [("L", "R").index(k[0]) for k in VIEW_ORDER]
_CC_BY_SIDE = [view_index(s, "CC") for s in ("L", "R")]
_MLO_BY_SIDE = [view_index(s, "MLO") for s in ("L", "R")]
# Per breast: [CC ipsi, CC contra, MLO ipsi, MLO contra]; rows = (L, R).
_MF_CONCAT_ORDER = [
    [view_index(s, "CC"), view_index(contralateral(s), "CC"), view_index(s, "MLO"),
     view_index(contralateral(s), "MLO")]
    for s in ("L", "R")
]


def _scaled_cfg(width: float) -> list[int | str]:
    """VGG16 configuration "D" with every channel count multiplied by `width` (at least 1 channel)."""
    return [v if v == "M" else max(1, round(int(v) * width)) for v in cfgs[VGG16_CFG]]


def _map_size(height: int, width: int) -> tuple[int, int]:
    """Spatial size of the trunk's output for an input of height x width (five 2x2 max pools, floored)."""
    for v in cfgs[VGG16_CFG]:
        if v == "M":
            height, width = height // 2, width // 2
    return height, width


def _imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet VGG16-BN weights from the torch hub cache; nothing downloads at run time."""
    weights = torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        raise FileNotFoundError(
            f"model.pretrained=imagenet: the ImageNet VGG16-BN weights are not in the torch hub cache "
            f"({cached}) and nothing downloads at run time; fetch {weights.url} beforehand and set "
            "model.pretrained to its path (or place it there)"
        )
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise RuntimeError(
            f"could not fetch torchvision's ImageNet VGG16-BN weights ({weights.url}): {err}. "
            "Without network access, download that file elsewhere and pass its path as `pretrained`."
        ) from err


def _trunk_tensors(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The VGG trunk's tensors of a torchvision-style state dict, keyed by their index inside `features`."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    trunk: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("features."):
            trunk[key[len("features."):]] = value
        elif key.split(".", 1)[0].isdigit():
            trunk[key] = value
    return trunk


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB filters (out, 3, k, k) -> (out, in_channels, k, k): the RGB sum shared evenly by the new channels.

    An input whose channels all hold the same grey image then gets the same response as the RGB network
    gives that grey image copied into R, G and B.
    """
    summed = weight.sum(dim=1, keepdim=True)
    return (summed / in_channels).repeat(1, in_channels, 1, 1).contiguous()


class ViewEncoder(nn.Module):
    """VGG16-BN trunk (torchvision cfg "D", maybe narrowed) + the authors' FC head: one feature per view."""

    def __init__(
        self,
        in_channels: int,
        width: float = MODEL_DEFAULTS.width,
        global_pool: bool = MODEL_DEFAULTS.global_pool,
        head: Sequence[int] = MODEL_DEFAULTS.head,
        dropout: float = MODEL_DEFAULTS.dropout,
        input_size: Sequence[int] = PAPER_INPUT_SIZE,
        pool: str = MODEL_DEFAULTS.pool,
        standardise: bool = MODEL_DEFAULTS.standardise,
    ) -> None:
        super().__init__()
        if in_channels not in INPUT_NAMES:
            raise ValueError(f"in_channels must be 1 (LE) or 2 (LE + DES), got {in_channels}")
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        if any(int(h) < 1 for h in head):
            raise ValueError(f"head sizes must be positive integers, got {tuple(head)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {tuple(POOLS)}, got {pool!r}")
        self.pool_kind = pool
        self.standardise = bool(standardise)
        if self.standardise:  # per-channel statistics of the training images, set by stage 1
            self.register_buffer("input_mean", torch.zeros(in_channels))
            self.register_buffer("input_std", torch.ones(in_channels))
        self.in_channels = int(in_channels)
        self.width = float(width)
        self.global_pool = bool(global_pool)
        self.head_sizes = tuple(int(h) for h in head)
        self.dropout = float(dropout)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.map_size = _map_size(*self.input_size)
        if min(self.map_size) < 1:
            raise ValueError(f"input_size {self.input_size} is too small for five 2x2 poolings (>= 32 x 32)")

        cfg = _scaled_cfg(self.width)
        self.features = make_layers(cfg, batch_norm=True)
        first = self.features[0]
        self.features[0] = nn.Conv2d(self.in_channels, first.out_channels, kernel_size=3, padding=1)
        self.trunk_channels = int(cfg[-2])
        if self.global_pool:
            self.pool: nn.Module = POOLS[pool](1)
            flat = self.trunk_channels
        else:
            self.pool = nn.Identity()
            flat = self.trunk_channels * self.map_size[0] * self.map_size[1]
        self.flat_size = flat
        layers: list[nn.Module] = []
        for size in self.head_sizes:
            layers += [nn.Linear(flat, size), nn.ReLU(inplace=True), nn.Dropout(self.dropout)]
            flat = size
        self.head = nn.Sequential(*layers)
        self.feature_dim = flat

    def arch(self) -> dict[str, Any]:
        """The settings that rebuild this encoder (JSON-friendly)."""
        return {
            "in_channels": self.in_channels,
            "width": self.width,
            "global_pool": self.global_pool,
            "head": list(self.head_sizes),
            "dropout": self.dropout,
            "input_size": list(self.input_size),
            "pool": self.pool_kind,
            "standardise": self.standardise,
        }

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the problem when `x` (N, C, H, W) does not fit this encoder."""
        if x.ndim != 4:
            raise ValueError(f"the view encoder expects (N, C, H, W) input, got shape {tuple(x.shape)}")
        _check_channels(x.shape[1], self.in_channels)
        if not self.global_pool and _map_size(x.shape[2], x.shape[3]) != self.map_size:
            raise ValueError(
                f"input of {x.shape[2]} x {x.shape[3]} pixels does not fit the flatten head built for "
                f"input_size {self.input_size[0]} x {self.input_size[1]} ({self.flat_size} values); "
                "resize the images or build the model with global_pool=True"
            )

    def set_input_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-channel mean and standard deviation the inputs are standardised with (standardise=True)."""
        if not self.standardise:
            raise ValueError("this encoder was built without standardise=True")
        if mean.shape != (self.in_channels,) or std.shape != (self.in_channels,) or not bool((std > 0).all()):
            raise ValueError(f"need {self.in_channels} means and positive standard deviations, got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's feature map (N, C', H/32, W/32)."""
        if self.standardise:
            x = (x - self.input_mean.view(1, -1, 1, 1)) / self.input_std.view(1, -1, 1, 1)
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, feature_dim) features."""
        self.check_input(x)
        fmap = self.pool(self.features(x))
        return self.head(torch.flatten(fmap, 1))

    def load_pretrained(self, source: str | os.PathLike | Mapping[str, Any]) -> None:
        """Load a VGG16-BN trunk: "imagenet" (torchvision), a local state-dict file, or a state dict.

        The 3-channel first convolution is adapted with `adapt_first_conv`; the ImageNet classifier is
        ignored (the authors' head has other sizes). A trunk of another width raises a ValueError.
        """
        if isinstance(source, str) and source.lower() == "imagenet":
            if self.width != 1.0:
                raise ValueError(f"ImageNet weights exist for width 1.0 only, not width {self.width}")
            state: Mapping[str, Any] = _imagenet_state_dict()
            origin = "torchvision ImageNet VGG16-BN weights"
        elif isinstance(source, Mapping):
            state, origin = source, "the given state dict"
        else:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"pretrained weights file not found: {path}")
            state = torch.load(path, map_location="cpu", weights_only=True)
            origin = str(path)
        trunk = _trunk_tensors(state)
        if not trunk:
            raise ValueError(f"{origin} holds no VGG trunk tensors (keys 'features.N.*')")
        own = self.features.state_dict()
        first_key = "0.weight"
        first = trunk.get(first_key)
        if first is not None and first.ndim == 4 and first.shape[1] != self.in_channels:
            trunk[first_key] = adapt_first_conv(first, self.in_channels)
        problems = _state_problems(own, trunk)
        if problems:
            raise ValueError(f"{origin} does not fit this VGG16-BN trunk (width {self.width}): {problems}")
        self.features.load_state_dict({k: v.to(own[k].dtype) for k, v in trunk.items()})


def _check_channels(got: int, expected: int) -> None:
    """Raise a ValueError when the input's channel count is not the model's."""
    if got != expected:
        raise ValueError(
            f"the model takes {expected} input channel(s) ({INPUT_NAMES.get(expected, '?')}) "
            f"but the input has {got}; inputs='cem' gives 2 channels (LE, DES), inputs='le' gives 1"
        )


class ImageClassifier(nn.Module):
    """Stage-1 network: view encoder + FC(d -> 2) classifying one image; (B, C, H, W) -> (B, 2) logits."""

    def __init__(self, encoder: ViewEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(encoder.feature_dim, 2)

    @property
    def arch(self) -> Architecture:
        """Settings that rebuild this model (stored in checkpoints as `arch_of`)."""
        return Architecture.from_dict({"fusion": IMAGE_MODEL, **self.encoder.arch()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) = (benign, malignant) for a batch of single images."""
        return self.classifier(self.encoder(x))


def _log_mean_prob(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log((exp(a) + exp(b)) / 2): log of the mean of two probability vectors given as log-probabilities."""
    return torch.logaddexp(a, b) - math.log(2.0)


class FusionNet(nn.Module):
    """The four-view network: one shared ViewEncoder and a fusion head (layout in the module docstring)."""

    def __init__(self, encoder: ViewEncoder, fusion: str) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; expected one of {FUSIONS}")
        self.fusion = fusion
        self.encoder = encoder
        d = encoder.feature_dim
        if fusion == "none":
            self.classifier = nn.Linear(d, 2)
        elif fusion == "left_right":
            self.pair_classifier = nn.Linear(2 * d, 2)
        elif fusion == "mf_average":
            self.cc_classifier = nn.Linear(2 * d, 2)
            self.mlo_classifier = nn.Linear(2 * d, 2)
        else:
            self.concat_classifier = nn.Linear(4 * d, 2)
        self.register_buffer("_contra", torch.tensor(_CONTRA), persistent=False)
        self.register_buffer("_cc", torch.tensor(_CC_BY_SIDE), persistent=False)
        self.register_buffer("_mlo", torch.tensor(_MLO_BY_SIDE), persistent=False)
        self.register_buffer("_concat", torch.tensor(_MF_CONCAT_ORDER).flatten(), persistent=False)

    @property
    def arch(self) -> Architecture:
        """Settings that rebuild this model (stored in checkpoints as `arch_of`)."""
        return Architecture.from_dict({"fusion": self.fusion, **self.encoder.arch()})

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the problem when `x` is not (B, 4, C, H, W) with the model's channels."""
        if x.ndim != 5 or x.shape[1] != len(VIEW_ORDER):
            raise ValueError(
                f"the fusion model expects x of shape (B, 4, C, H, W) with views {VIEW_ORDER}, "
                f"got shape {tuple(x.shape)}"
            )
        _check_channels(x.shape[2], self.encoder.in_channels)

    def view_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 4, C, H, W) -> (B, 4, d): the shared encoder run once on the B * 4 views."""
        self.check_input(x)
        batch = x.shape[0]
        views = x.flatten(0, 1)
        if _is_channels_last(self.encoder):
            views = views.contiguous(memory_format=torch.channels_last)
        return self.encoder(views).view(batch, len(VIEW_ORDER), -1)

    def fuse(self, feats: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """View features (B, 4, d) -> outputs dict (see the module docstring)."""
        batch = feats.shape[0]
        if self.fusion in ("none", "left_right"):
            if self.fusion == "none":
                logits = self.classifier(feats)
            else:
                logits = self.pair_classifier(torch.cat([feats, feats[:, self._contra]], dim=-1))
            image_lp = F.log_softmax(logits, dim=-1)
            breast_lp = _log_mean_prob(image_lp[:, self._cc], image_lp[:, self._mlo])
            return {"breast_logprob": breast_lp, "image_logprob": image_lp}
        if self.fusion == "mf_average":
            pairs = torch.cat([feats, feats[:, self._contra]], dim=-1)
            cc_lp = F.log_softmax(self.cc_classifier(pairs[:, self._cc]), dim=-1)
            mlo_lp = F.log_softmax(self.mlo_classifier(pairs[:, self._mlo]), dim=-1)
            return {"breast_logprob": _log_mean_prob(cc_lp, mlo_lp), "image_logprob": None}
        per_breast = feats[:, self._concat].reshape(batch, 2, -1)
        breast_lp = F.log_softmax(self.concat_classifier(per_breast), dim=-1)
        return {"breast_logprob": breast_lp, "image_logprob": None}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """(B, 4, C, H, W) in VIEW_ORDER -> dict(breast_logprob (B, 2, 2), image_logprob (B, 4, 2) | None)."""
        return self.fuse(self.view_features(x))


def _is_channels_last(encoder: ViewEncoder) -> bool:
    """Whether the encoder's weights were converted to channels_last (judged on its last convolution)."""
    convs = [m for m in encoder.features if isinstance(m, nn.Conv2d)]
    weight = convs[-1].weight
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def build_encoder(in_channels: int, pretrained: str | os.PathLike | None = None, **options: Any
                  ) -> ViewEncoder:
    """A ViewEncoder (options as its arguments: width, global_pool, head, dropout, input_size, pool,
    standardise), optionally with a pretrained trunk ("imagenet" or a local state-dict path)."""
    encoder = ViewEncoder(in_channels, **options)
    if pretrained is not None:
        encoder.load_pretrained(pretrained)
    return encoder


def build_model(fusion: str, in_channels: int, **encoder_options: Any) -> FusionNet:
    """The four-view fusion network of the paper (fusion in FUSIONS); options as for build_encoder."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {FUSIONS}")
    return FusionNet(build_encoder(in_channels, **encoder_options), fusion)


def build_image_classifier(in_channels: int, **encoder_options: Any) -> ImageClassifier:
    """The stage-1 single-image classifier with the same encoder as build_model."""
    return ImageClassifier(build_encoder(in_channels, **encoder_options))


def arch_of(model: nn.Module) -> dict[str, Any]:
    """The arch dict of a FusionNet or ImageClassifier: fusion, in_channels, width, global_pool, head, ..."""
    if not isinstance(model, FusionNet | ImageClassifier):
        raise TypeError(f"expected a FusionNet or ImageClassifier, got {type(model).__name__}")
    return model.arch.as_dict()


def _normalise_arch(arch: Mapping[str, Any] | Architecture) -> dict[str, Any]:
    """An arch (record or checkpoint dict) as a typed plain dict, so that equal settings compare equal."""
    return Architecture.from_dict(arch).as_dict()


def model_from_arch(arch: Mapping[str, Any] | Architecture) -> FusionNet | ImageClassifier:
    """Rebuild an untrained network from an arch (fusion IMAGE_MODEL gives the stage-1 classifier)."""
    record = Architecture.from_dict(arch)
    encoder = ViewEncoder(**record.encoder_options())
    if record.fusion == IMAGE_MODEL:
        return ImageClassifier(encoder)
    return FusionNet(encoder, record.fusion)


def _describe(arch: Mapping[str, Any], keys: Sequence[str]) -> str:
    """'fusion=mf_average, in_channels=1' for the given keys."""
    return ", ".join(f"{k}={arch[k]}" for k in keys)


def _relevant_keys(a: Mapping[str, Any], b: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """Keys whose values differ; input_size counts only when a flatten head depends on it."""
    differing = [k for k in keys if a[k] != b[k]]
    if "pool" in differing and not (a["global_pool"] or b["global_pool"]):
        differing.remove("pool")  # no global pooling: the pool kind shapes nothing
    if "input_size" in differing and a["global_pool"] and b["global_pool"]:
        differing.remove("input_size")
    return differing


def check_arch(
    checkpoint_arch: Mapping[str, Any] | Architecture, model_arch: Mapping[str, Any] | Architecture,
    encoder_only: bool = False,
) -> None:
    """Raise a ValueError naming every setting in which a checkpoint's arch differs from the model's.

    encoder_only compares only the settings that shape the encoder (stage-1 weights may go into any fusion).
    """
    ckpt, model = _normalise_arch(checkpoint_arch), _normalise_arch(model_arch)
    keys = ENCODER_ARCH_KEYS if encoder_only else ("fusion", *ENCODER_ARCH_KEYS)
    differing = _relevant_keys(ckpt, model, keys)
    if differing:
        raise ValueError(
            f"checkpoint is for {_describe(ckpt, differing)} but model is {_describe(model, differing)}"
        )


def _state_problems(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """Human-readable list of missing keys, unexpected keys and shape mismatches ('' when they fit)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {tuple(given[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    groups = (("missing", missing), ("unexpected", unexpected), ("shape mismatch (given vs model)", shapes))
    for label, items in groups:
        if items:
            more = f" and {len(items) - 5} more" if len(items) > 5 else ""
            parts.append(f"{label}: {', '.join(items[:5])}{more}")
    return "; ".join(parts)


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise a ValueError listing missing/unexpected keys and shape mismatches of a state dict vs a model."""
    problems = _state_problems(model.state_dict(), state_dict)
    if problems:
        raise ValueError(f"state dict does not match {type(model).__name__}: {problems}")


def load_model_state(
    model: FusionNet | ImageClassifier,
    state_dict: Mapping[str, torch.Tensor],
    arch: Mapping[str, Any] | None = None,
) -> None:
    """Load a full state dict after checking the checkpoint's arch (when given) and every key and shape."""
    if arch is not None:
        check_arch(arch, arch_of(model))
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict)


def encoder_checkpoint(model: FusionNet | ImageClassifier) -> dict[str, Any]:
    """{"arch", "encoder": state dict, "classifier": state dict or None} of a model's shared encoder."""
    classifier = getattr(model, "classifier", None)
    return {
        "arch": arch_of(model),
        "encoder": model.encoder.state_dict(),
        "classifier": classifier.state_dict() if isinstance(classifier, nn.Linear) else None,
    }


def _split_full_state(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A full model state dict ("encoder.*", "classifier.*", ...) -> {"encoder", "classifier"} parts."""
    encoder = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    classifier = {k[len("classifier."):]: v for k, v in state.items() if k.startswith("classifier.")}
    return {"encoder": encoder, "classifier": classifier or None}


def load_encoder(
    model: FusionNet | ImageClassifier,
    checkpoint: Mapping[str, Any],
    with_classifier: bool = True,
    where: str = "encoder weights",
) -> list[str]:
    """Load encoder weights from an encoder_checkpoint or full checkpoint dict (or a bare state dict).

    The single-image classifier comes along when both sides have one ("none" fusion or stage-1 model).
    Returns the names of the parts loaded. Raises a ValueError naming any mismatch (and `where`).
    Files are read through cemlib.model.checkpoints.load_encoder.
    """
    if "model" in checkpoint and "encoder" not in checkpoint:
        parts = {"arch": checkpoint.get("arch"), **_split_full_state(checkpoint["model"])}
    elif "encoder" in checkpoint:
        parts = dict(checkpoint)
    else:
        parts = {"arch": None, **_split_full_state(checkpoint)}
    if not parts.get("encoder"):
        raise ValueError(f"{where}: holds no encoder weights")
    try:
        if parts.get("arch") is not None:
            check_arch(parts["arch"], arch_of(model), encoder_only=True)
        check_state_dict(model.encoder, parts["encoder"])
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    model.encoder.load_state_dict(parts["encoder"])
    loaded = ["encoder"]
    classifier = getattr(model, "classifier", None)
    if with_classifier and isinstance(classifier, nn.Linear) and parts.get("classifier"):
        check_state_dict(classifier, parts["classifier"])
        classifier.load_state_dict(parts["classifier"])
        loaded.append("classifier")
    return loaded


def fusion_loss(outputs: Mapping[str, torch.Tensor | None], y: torch.Tensor) -> torch.Tensor:
    """Training loss from FusionNet outputs and breast labels y (B, 2) = [label L, label R].

    Multi-feature fusions: NLL(left) + NLL(right), each averaged over the batch (the authors' CE + CE).
    "none" / "left_right": the mean per-image NLL over the B * 4 views, each view carrying its breast's label.
    """
    breast_lp = outputs["breast_logprob"]
    if y.ndim != 2 or y.shape[1] != 2 or y.shape[0] != breast_lp.shape[0]:
        raise ValueError(
            f"labels must be (B, 2) = [left, right] with B = {breast_lp.shape[0]}, got {tuple(y.shape)}"
        )
    y = y.long()
    image_lp = outputs.get("image_logprob")
    if image_lp is not None:
        per_view = y[:, _SIDE_OF_VIEW]
        return F.nll_loss(image_lp.reshape(-1, 2), per_view.reshape(-1))
    return F.nll_loss(breast_lp[:, 0], y[:, 0]) + F.nll_loss(breast_lp[:, 1], y[:, 1])


def view_probability(outputs: Mapping[str, torch.Tensor | None] | torch.Tensor) -> torch.Tensor | None:
    """Malignant probability per view (B, 4) of a view-level model ("none", "left_right"), else None.

    Image-classifier logits (N, 2) give the probability per image (N,).
    """
    if isinstance(outputs, torch.Tensor):
        return torch.softmax(outputs.float(), dim=-1)[..., 1]
    image_lp = outputs.get("image_logprob")
    return None if image_lp is None else image_lp[..., 1].float().exp()


def breast_from_views(view_prob: torch.Tensor) -> torch.Tensor:
    """(B, 4) per-view probabilities in VIEW_ORDER -> (B, 2) per breast: the mean of its CC and MLO views."""
    sides = [(view_prob[..., view_index(side, "CC")] + view_prob[..., view_index(side, "MLO")]) / 2.0
             for side in SIDES]
    return torch.stack(sides, dim=-1)


def malignant_probability(outputs: Mapping[str, torch.Tensor | None] | torch.Tensor) -> torch.Tensor:
    """THE malignant probability of a model's outputs: per breast (B, 2) = [left, right] for FusionNet
    outputs (view-level fusions: the mean of the breast's CC and MLO views), per image (N,) for logits."""
    views = view_probability(outputs)
    if isinstance(outputs, torch.Tensor):
        return views
    if views is not None:
        return breast_from_views(views)
    return outputs["breast_logprob"][..., 1].float().exp()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (works on the meta device, nothing is allocated)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def training_flops_per_image(arch: Mapping[str, Any] | Architecture) -> int:
    """Floating-point operations of one training step (forward + backward) per view image.

    Counted by torch's FlopCounterMode (matrix products and convolutions, 2 per multiply-add) on the meta
    device, so nothing is computed or allocated: one patient (4 views) through `model_from_arch(arch)`.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        record = Architecture.from_dict(arch)
        model = model_from_arch(record)
        channels, (height, width) = record.in_channels, record.input_size
        views = 1 if isinstance(model, ImageClassifier) else len(VIEW_ORDER)
        shape = (1, channels, height, width) if views == 1 else (1, views, channels, height, width)
        x = torch.zeros(shape)
        y = torch.zeros((1,), dtype=torch.long) if views == 1 else torch.zeros((1, 2), dtype=torch.long)
    model.train()
    with FlopCounterMode(display=False) as counter:
        outputs = model(x)
        loss = F.cross_entropy(outputs, y) if views == 1 else fusion_loss(outputs, y)
        loss.backward()
    return math.ceil(counter.get_total_flops() / views)
