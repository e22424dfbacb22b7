"""Tests of the view encoder, the four fusion heads, weight sharing, checkpoints and pretrained weights."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from cemlib.core.views import VIEW_ORDER
from cemlib.model import networks as models
from cemlib.model.checkpoints import load_encoder, load_model, save_encoder, save_model
from cemlib.model.networks import (
    FUSIONS,
    FusionNet,
    ImageClassifier,
    ViewEncoder,
    arch_of,
    build_image_classifier,
    build_model,
    check_arch,
    count_parameters,
    fusion_loss,
    load_model_state,
    malignant_probability,
    model_from_arch,
)
from tests.factories import calibrate_batch_norm

SMALL = {"width": 0.0625, "head": (32, 16, 8), "input_size": (64, 32)}


def small_model(fusion: str, in_channels: int = 2, seed: int = 0, **kw) -> FusionNet:
    """A narrow fusion model at 64 x 32 input, seeded, BN statistics calibrated, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(fusion, in_channels, **{**SMALL, **kw})
    return calibrate_batch_norm(model, exam_batch(batch=4, channels=in_channels, seed=seed + 100))


def exam_batch(batch: int = 3, channels: int = 2, seed: int = 1) -> torch.Tensor:
    """Random exams (B, 4, C, 64, 32)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 4, channels, 64, 32, generator=g)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_outputs_are_normalised_log_probabilities_per_breast(fusion):
    model = small_model(fusion)
    out = model(exam_batch())
    assert out["breast_logprob"].shape == (3, 2, 2)
    torch.testing.assert_close(out["breast_logprob"].exp().sum(-1), torch.ones(3, 2))
    if fusion in ("none", "left_right"):
        assert out["image_logprob"].shape == (3, 4, 2)
        torch.testing.assert_close(out["image_logprob"].exp().sum(-1), torch.ones(3, 4))
    else:
        assert out["image_logprob"] is None
    scores = malignant_probability(out)
    assert scores.shape == (3, 2) and bool(((scores >= 0) & (scores <= 1)).all())
    # view-level fusions: the breast's score is the mean of its CC and MLO views, which is what the
    # network's own per-breast log-probability says
    torch.testing.assert_close(scores, out["breast_logprob"][..., 1].exp(), rtol=1e-5, atol=1e-6)
    if fusion in ("none", "left_right"):
        views = out["image_logprob"][..., 1].exp()
        torch.testing.assert_close(scores, torch.stack([(views[:, 0] + views[:, 1]) / 2,
                                                        (views[:, 2] + views[:, 3]) / 2], dim=-1))


@pytest.mark.parametrize("fusion", FUSIONS)
def test_swapping_left_and_right_inputs_swaps_breast_outputs_exactly(fusion):
    model = small_model(fusion)
    x = exam_batch()
    with torch.no_grad():
        out = model(x)
        swapped = model(x[:, [2, 3, 0, 1]])
    assert torch.equal(swapped["breast_logprob"], out["breast_logprob"][:, [1, 0]])
    assert not torch.equal(out["breast_logprob"][:, 0], out["breast_logprob"][:, 1])
    if out["image_logprob"] is not None:
        assert torch.equal(swapped["image_logprob"], out["image_logprob"][:, [2, 3, 0, 1]])


def _features_by_view(model: FusionNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each view's feature computed on its own, keyed by view name."""
    return {name: model.encoder(x[:, i]) for i, name in enumerate(VIEW_ORDER)}


def _reference_breast_probs(model: FusionNet, f: dict[str, torch.Tensor]) -> torch.Tensor:
    """The paper's fusion written out by view name: (B, 2 sides, 2 classes) probabilities."""
    def soft(linear, *names):
        return F.softmax(linear(torch.cat([f[n] for n in names], dim=-1)), dim=-1)

    if model.fusion == "none":
        left = (soft(model.classifier, "LCC") + soft(model.classifier, "LMLO")) / 2
        right = (soft(model.classifier, "RCC") + soft(model.classifier, "RMLO")) / 2
    elif model.fusion == "left_right":
        left = (soft(model.pair_classifier, "LCC", "RCC") + soft(model.pair_classifier, "LMLO", "RMLO")) / 2
        right = (soft(model.pair_classifier, "RCC", "LCC") + soft(model.pair_classifier, "RMLO", "LMLO")) / 2
    elif model.fusion == "mf_average":
        left = (soft(model.cc_classifier, "LCC", "RCC") + soft(model.mlo_classifier, "LMLO", "RMLO")) / 2
        right = (soft(model.cc_classifier, "RCC", "LCC") + soft(model.mlo_classifier, "RMLO", "LMLO")) / 2
    else:
        left = soft(model.concat_classifier, "LCC", "RCC", "LMLO", "RMLO")
        right = soft(model.concat_classifier, "RCC", "LCC", "RMLO", "LMLO")
    return torch.stack([left, right], dim=1)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_fusion_matches_the_papers_definition_written_by_view_name(fusion):
    model = small_model(fusion)
    x = exam_batch()
    with torch.no_grad():
        expected = _reference_breast_probs(model, _features_by_view(model, x))
        got = model(x)["breast_logprob"].exp()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_mf_concat_head_is_2048_to_2_at_paper_feature_size():
    with torch.device("meta"):
        model = build_model("mf_concat", 2)
    assert model.encoder.feature_dim == 512
    assert tuple(model.concat_classifier.weight.shape) == (2, 2048)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_one_encoder_module_holds_all_backbone_weights(fusion):
    model = small_model(fusion)
    encoders = [m for m in model.modules() if isinstance(m, ViewEncoder)]
    assert encoders == [model.encoder]
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    assert sum(p.numel() for p in head_params) == sum(
        p.numel() for m in model.children() if isinstance(m, nn.Linear) for p in m.parameters()
    )
    assert len(encoder_ids) + len(head_params) == len(list(model.parameters()))


def test_encoder_runs_once_on_the_four_views_of_every_exam():
    model = small_model("mf_concat")
    calls = []
    handle = model.encoder.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    model(exam_batch(batch=3))
    handle.remove()
    assert calls == [(12, 2, 64, 32)]


@pytest.mark.parametrize("fusion", FUSIONS)
def test_shared_encoder_gradient_is_the_sum_of_per_view_gradients(fusion):
    """The gradient reaching the one encoder equals the sum over views of separate copies' gradients."""
    model = small_model(fusion)
    x = exam_batch(batch=2)
    y = torch.tensor([[0, 1], [1, 1]])
    model.zero_grad()
    fusion_loss(model(x), y).backward()
    shared = {n: p.grad.clone() for n, p in model.encoder.named_parameters()}

    copies = [copy.deepcopy(model.encoder) for _ in VIEW_ORDER]
    feats = torch.stack([copies[i](x[:, i]) for i in range(4)], dim=1)
    fusion_loss(model.fuse(feats), y).backward()
    for copy_ in copies:  # every view reaches the first convolution
        assert copy_.features[0].weight.grad.abs().sum() > 0
    for name, grad in shared.items():
        per_view = [dict(c.named_parameters())[name].grad for c in copies]
        torch.testing.assert_close(grad, sum(per_view), rtol=1e-4, atol=1e-6)


def test_parameter_count_at_512x256_matches_the_authors_head():
    trunk = sum(p.numel() for p in make_layers(cfgs["D"], batch_norm=True).to("meta").parameters())
    first_conv_rgb = 64 * 3 * 3 * 3
    head = (65536 * 4096 + 4096) + (4096 * 1024 + 1024) + (1024 * 512 + 512)
    fusion_fc = {"none": 512 * 2 + 2, "left_right": 1024 * 2 + 2, "mf_average": 2 * (1024 * 2 + 2),
                 "mf_concat": 2048 * 2 + 2}
    for in_channels in (1, 2):
        for fusion in FUSIONS:
            with torch.device("meta"):
                model = build_model(fusion, in_channels)
            expected = trunk - first_conv_rgb + 64 * in_channels * 9 + head + fusion_fc[fusion]
            assert count_parameters(model) == expected, (fusion, in_channels)
            assert model.encoder.flat_size == 512 * 16 * 8
    assert 287_000_000 < expected < 289_000_000


VGG16_CHANNELS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
FUSION_INPUTS = {"image": (1, 1), "none": (4, 1), "left_right": (4, 2), "mf_average": (4, 2),
                 "mf_concat": (2, 4)}  # fusion -> (rows per patient, features per row) of the last FC


def hand_counted_training_flops(fusion, in_channels, width, size, head, global_pool):
    """FLOPs of forward + backward per view image, counted from the layer shapes (2 per multiply-add).

    Backward costs two forwards (input and weight gradients) except for the first convolution, whose
    input needs no gradient.
    """
    height, wide = size
    channels, convs = in_channels, []
    for v in VGG16_CHANNELS:
        if v == "M":
            height, wide = height // 2, wide // 2
            continue
        out = max(1, round(v * width))
        convs.append(2 * 9 * channels * out * height * wide)
        channels = out
    flat = channels if global_pool else channels * height * wide
    linears = []
    for size_ in head:
        linears.append(2 * flat * size_)
        flat = size_
    views = 1 if fusion == "image" else 4
    rows, features = FUSION_INPUTS[fusion]
    last_fc = rows * 2 * features * flat * 2
    per_view_forward = sum(convs) + sum(linears)
    total = views * (3 * per_view_forward - convs[0]) + 3 * last_fc
    return total / views


@pytest.mark.parametrize("fusion", ("image", *FUSIONS))
def test_training_flops_per_image_match_a_hand_count(fusion):
    paper = {"fusion": fusion, "in_channels": 2, "width": 1.0, "global_pool": False,
             "head": [4096, 1024, 512], "dropout": 0.5, "input_size": [512, 256]}
    small = {**paper, "in_channels": 1, "width": 0.125, "global_pool": True, "head": [64, 32],
             "input_size": [128, 64]}
    for arch in (paper, small):
        expected = hand_counted_training_flops(
            fusion, arch["in_channels"], arch["width"], arch["input_size"], arch["head"], arch["global_pool"]
        )
        assert models.training_flops_per_image(arch) == pytest.approx(expected, abs=1)
    # VGG16 at 224 x 224 is 15.5 G multiply-adds forward; 512 x 256 has 2.61 times the pixels.
    assert 235e9 < models.training_flops_per_image(paper) < 245e9


def test_trunk_state_dict_keys_match_torchvision_vgg16_bn():
    with torch.device("meta"):
        reference = torchvision.models.vgg16_bn(weights=None).features.state_dict()
        encoder = ViewEncoder(2)
    ours = encoder.features.state_dict()
    assert list(ours) == list(reference)
    for key, value in reference.items():
        if key != "0.weight":
            assert ours[key].shape == value.shape, key
    assert tuple(ours["0.weight"].shape) == (64, 2, 3, 3)


def test_width_multiplier_scales_every_convolution():
    encoder = ViewEncoder(1, width=0.125, head=(16,), input_size=(64, 32))
    convs = [m.out_channels for m in encoder.features if isinstance(m, nn.Conv2d)]
    assert convs == [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64]
    assert encoder.flat_size == 64 * 2 * 1


def test_global_pool_accepts_other_input_sizes_and_flatten_head_refuses_them():
    pooled = build_model("mf_concat", 1, global_pool=True, **SMALL).eval()
    assert pooled.encoder.flat_size == 32
    assert pooled(torch.rand(1, 4, 1, 96, 64))["breast_logprob"].shape == (1, 2, 2)
    flat = small_model("mf_concat", in_channels=1)
    with pytest.raises(ValueError, match="input_size 64 x 32"):
        flat(torch.rand(1, 4, 1, 96, 64))


def test_mismatched_channels_or_views_raise_clear_errors():
    model = small_model("mf_average", in_channels=2)
    with pytest.raises(ValueError, match=r"takes 2 input channel\(s\) \(LE \+ DES\) but the input has 1"):
        model(exam_batch(channels=1))
    with pytest.raises(ValueError, match="views"):
        model(torch.rand(2, 3, 2, 64, 32))
    with pytest.raises(ValueError, match="in_channels must be 1"):
        build_model("mf_concat", 3, **SMALL)
    with pytest.raises(ValueError, match="unknown fusion"):
        build_model("late", 2, **SMALL)
    with pytest.raises(ValueError, match="too small"):
        build_model("none", 2, input_size=(16, 16))


def test_channels_last_gives_the_same_outputs():
    model = small_model("mf_concat")
    x = exam_batch()
    with torch.no_grad():
        reference = model(x)["breast_logprob"]
        model = model.to(memory_format=torch.channels_last)
        assert models._is_channels_last(model.encoder)
        got = model(x)["breast_logprob"]
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)


def test_fusion_loss_is_the_authors_cross_entropy():
    logits = torch.tensor([[[2.0, -1.0], [0.5, 0.3]], [[-1.0, 1.0], [0.0, 0.0]]])
    y = torch.tensor([[0, 1], [1, 0]])
    out = {"breast_logprob": F.log_softmax(logits, -1), "image_logprob": None}
    expected = F.cross_entropy(logits[:, 0], y[:, 0]) + F.cross_entropy(logits[:, 1], y[:, 1])
    torch.testing.assert_close(fusion_loss(out, y), expected)

    image_logits = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(0))
    out = {"breast_logprob": F.log_softmax(logits, -1), "image_logprob": F.log_softmax(image_logits, -1)}
    per_view_labels = torch.tensor([[0, 0, 1, 1], [1, 1, 0, 0]])  # LCC, LMLO carry L; RCC, RMLO carry R
    expected = F.cross_entropy(image_logits.reshape(-1, 2), per_view_labels.reshape(-1))
    torch.testing.assert_close(fusion_loss(out, y), expected)
    with pytest.raises(ValueError, match=r"labels must be \(B, 2\)"):
        fusion_loss(out, torch.tensor([0, 1]))


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    """Give every parameter and BN statistic non-default values, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.05 * torch.randn(t.shape, generator=g))
                if t.ndim == 1:
                    t.abs_()
    return model


def test_stage1_weights_load_into_every_fusion_and_into_the_none_classifier(tmp_path):
    torch.manual_seed(3)
    stage1 = _perturbed(build_image_classifier(2, **SMALL), seed=4).eval()
    path = save_encoder(stage1, tmp_path / "stage1.pt")
    x = exam_batch(batch=2)
    for fusion in FUSIONS:
        model = small_model(fusion, seed=9)
        loaded = load_encoder(model, path)
        assert loaded == (["encoder", "classifier"] if fusion == "none" else ["encoder"])
        for key, value in stage1.encoder.state_dict().items():
            assert torch.equal(model.encoder.state_dict()[key], value), key
    none = small_model("none", seed=9)
    none.load_state_dict(stage1.state_dict())  # same module names: a plain strict load works too
    with torch.no_grad():
        image_lp = none(x)["image_logprob"]
        expected = torch.stack([F.log_softmax(stage1(x[:, i]), -1) for i in range(4)], dim=1)
    torch.testing.assert_close(image_lp, expected, rtol=1e-5, atol=1e-6)


def test_loading_an_encoder_of_another_architecture_names_the_mismatch(tmp_path):
    stage1 = build_image_classifier(2, **{**SMALL, "width": 0.125})
    path = save_encoder(stage1, tmp_path / "wide.pt")
    with pytest.raises(ValueError, match=r"checkpoint is for width=0.125 but model is width=0.0625"):
        load_encoder(small_model("mf_concat"), path)
    bare = {k: v for k, v in stage1.state_dict().items()}
    with pytest.raises(ValueError, match="shape mismatch"):
        models.load_encoder(small_model("mf_concat"), bare)


def test_checkpoint_of_another_fusion_or_input_is_refused_with_its_settings(tmp_path):
    source = small_model("mf_average", in_channels=1)
    path = save_model(source, tmp_path / "avg.pt", epoch=3)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["epoch"] == 3 and checkpoint["arch"]["fusion"] == "mf_average"
    target = small_model("mf_concat", in_channels=2)
    with pytest.raises(
        ValueError,
        match="checkpoint is for fusion=mf_average, in_channels=1 "
        "but model is fusion=mf_concat, in_channels=2",
    ):
        load_model_state(target, checkpoint["model"], checkpoint["arch"])
    with pytest.raises(ValueError, match=r"missing: concat_classifier\.weight"):
        load_model_state(small_model("mf_concat", in_channels=1), checkpoint["model"])


def test_save_and_load_model_rebuilds_the_same_network(tmp_path):
    model = _perturbed(small_model("left_right", in_channels=1), seed=5).eval()
    path = save_model(model, tmp_path / "lr.pt")
    again = load_model(path).eval()
    assert isinstance(again, FusionNet) and again.arch == model.arch
    x = exam_batch(channels=1)
    with torch.no_grad():
        assert torch.equal(again(x)["breast_logprob"], model(x)["breast_logprob"])
    assert isinstance(model_from_arch({**arch_of(model), "fusion": "image"}), ImageClassifier)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a cemlib checkpoint"):
        load_model(tmp_path / "foreign.pt")


def test_check_arch_ignores_input_size_when_both_pool_globally():
    a = arch_of(small_model("none", global_pool=True))
    check_arch(a, {**a, "input_size": [128, 64]})
    with pytest.raises(ValueError, match="input_size"):
        check_arch({**a, "global_pool": False}, {**a, "global_pool": False, "input_size": [128, 64]})


def _vgg_trunk_file(tmp_path, seed: int = 0):
    """A torchvision VGG16-BN trunk state dict saved as torchvision names it ("features.N.*")."""
    torch.manual_seed(seed)
    trunk = _perturbed(make_layers(cfgs["D"], batch_norm=True), seed=seed + 1)
    state = {f"features.{k}": v for k, v in trunk.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # ImageNet head: must be ignored
    path = tmp_path / "vgg16_bn_trunk.pth"
    torch.save(state, path)
    return trunk, path


def test_pretrained_trunk_from_a_local_state_dict_adapts_the_first_convolution(tmp_path):
    trunk, path = _vgg_trunk_file(tmp_path)
    model = build_model("mf_concat", 2, head=(8,), input_size=(64, 32), pretrained=path)
    ours, theirs = model.encoder.features.state_dict(), trunk.state_dict()
    for key in theirs:
        if key != "0.weight":
            assert torch.equal(ours[key], theirs[key]), key
    # A grey image copied into both channels gets the RGB network's response to it copied into R, G, B.
    grey = torch.rand(2, 1, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model.encoder.features[0](grey.repeat(1, 2, 1, 1)), trunk[0](grey.repeat(1, 3, 1, 1)),
            rtol=1e-5, atol=1e-5,
        )
    le_model = build_model("none", 1, head=(8,), input_size=(64, 32), pretrained=path)
    torch.testing.assert_close(le_model.encoder.features[0].weight, theirs["0.weight"].sum(1, keepdim=True))


def test_pretrained_errors_are_clear(tmp_path, monkeypatch):
    _, path = _vgg_trunk_file(tmp_path)
    with pytest.raises(ValueError, match="does not fit this VGG16-BN trunk"):
        build_model("mf_concat", 2, **SMALL, pretrained=path)
    with pytest.raises(FileNotFoundError, match="pretrained weights file not found"):
        build_model("mf_concat", 2, **SMALL, pretrained=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match=r"width 1\.0 only"):
        build_model("mf_concat", 2, **SMALL, pretrained="imagenet")

    def download(self, *args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torchvision.models.VGG16_BN_Weights, "get_state_dict", download)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # nothing cached there
    with pytest.raises(FileNotFoundError, match=r"pretrained=imagenet: .* nothing downloads at run time"):
        build_model("mf_concat", 2, head=(8,), input_size=(64, 32), pretrained="imagenet")


@pytest.mark.slow
def test_full_torchvision_vgg16_bn_state_dict_loads(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.vgg16_bn(weights=None)
    path = tmp_path / "vgg16_bn.pth"
    torch.save(reference.state_dict(), path)
    encoder = models.build_encoder(1, head=(8,), input_size=(64, 32), pretrained=path)
    for key, value in reference.features.state_dict().items():
        if key != "0.weight":
            assert torch.equal(encoder.features.state_dict()[key], value), key


def test_max_pooling_and_standardised_inputs_survive_a_checkpoint_and_bind_the_arch(tmp_path):
    """The smoke profile's encoder: its pooling and input statistics come back from a checkpoint, and a
    checkpoint pooled another way (same weight shapes) is refused, not loaded silently."""
    model = models.build_image_classifier(2, width=0.0625, global_pool=True, head=[16], input_size=(64, 32),
                                          pool="max", standardise=True)
    model.encoder.set_input_statistics(torch.tensor([0.32, 0.30]), torch.tensor([0.27, 0.19]))
    again = load_model(save_model(model, tmp_path / "s1.pt")).eval()
    assert again.arch.pool == "max" and again.arch.standardise is True
    assert torch.equal(again.encoder.input_mean, torch.tensor([0.32, 0.30]))
    x = torch.rand(3, 2, 64, 32)
    with torch.no_grad():
        assert torch.equal(again(x), model.eval()(x))
        mean, sd = torch.tensor([0.32, 0.30]).view(1, 2, 1, 1), torch.tensor([0.27, 0.19]).view(1, 2, 1, 1)
        shifted = (x - mean) / sd
        assert torch.allclose(again.encoder.features(shifted), again.encoder.forward_features(x))
    with pytest.raises(ValueError, match="pool"):
        check_arch(model.arch, {**arch_of(model), "pool": "avg"})
    legacy = {k: v for k, v in arch_of(model).items() if k not in ("pool", "standardise")}
    assert model_from_arch(legacy).encoder.pool_kind == "avg"  # checkpoints written before the choice
