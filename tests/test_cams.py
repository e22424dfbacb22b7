"""Tests of Grad-CAM++ (against the grad-cam package), per-view fusion maps, the pointing game and figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from cemlib.core.fileio import save_figure
from cemlib.core.views import SIDES, VIEW_ORDER
from cemlib.inference import cams
from cemlib.inference.cams import (
    cam_for_exam,
    cam_overlay,
    default_target_layer,
    explain_exam,
    fusion_cams,
    gradcam_plusplus_raw,
    image_cams,
    own_breast_maps,
    plot_exam_cams,
    pointing_game,
    pointing_hits,
)
from cemlib.model.networks import (
    FUSIONS,
    FusionNet,
    build_image_classifier,
    build_model,
    malignant_probability,
)
from tests.factories import calibrate_batch_norm

SMALL = {"width": 0.0625, "head": (32, 16), "input_size": (128, 64)}


def _images(*shape: int, seed: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def image_model(seed: int = 0):
    torch.manual_seed(seed)
    return calibrate_batch_norm(build_image_classifier(2, **SMALL), _images(8, 2, 128, 64, seed=seed + 50))


def fusion_model(fusion: str, seed: int = 0) -> FusionNet:
    torch.manual_seed(seed)
    return calibrate_batch_norm(build_model(fusion, 2, **SMALL), _images(4, 4, 2, 128, 64, seed=seed + 50))


def _layers(encoder):
    """The default layer, the trunk's last pooling and a mid-trunk ReLU."""
    return [default_target_layer(encoder), encoder.features[-1], encoder.features[22]]


@pytest.mark.parametrize(("layer_index", "target_class"), [(0, 1), (1, 0), (2, 1)])
def test_single_view_maps_equal_the_grad_cam_package(layer_index, target_class):
    model = image_model()
    layer = _layers(model.encoder)[layer_index]
    x = _images(3, 2, 128, 64, seed=7)
    ours = image_cams(model, x, target_class, layer)
    with GradCAMPlusPlus(model=model, target_layers=[layer]) as reference:
        expected = reference(input_tensor=x, targets=[ClassifierOutputTarget(target_class)] * 3)
    assert ours.shape == expected.shape == (3, 128, 64)
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)
    assert ours.max() > 0.99 and ours.min() >= 0


def test_raw_low_resolution_map_equals_the_packages_before_resizing():
    model = image_model(seed=1)
    layer = default_target_layer(model.encoder)
    x = _images(2, 2, 128, 64, seed=8)
    with GradCAMPlusPlus(model=model, target_layers=[layer]) as reference:
        reference(input_tensor=x, targets=[ClassifierOutputTarget(1)] * 2)
        acts = reference.activations_and_grads.activations[0].numpy()
        grads = reference.activations_and_grads.gradients[0].numpy()
        expected = np.maximum(reference.get_cam_image(x, layer, None, acts, grads), 0)
    ours = gradcam_plusplus_raw(torch.from_numpy(acts), torch.from_numpy(grads)).numpy()
    assert ours.shape == (2, 64, 32)  # the default layer at 128 x 64: the second block (see below)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))


class OneViewScore(nn.Module):
    """Reference: breast score as a function of ONE view's image, the encoder run on that view alone.

    The other three views' features are fixed constants, so a hook sees exactly one encoder call for
    one image: the setting in which the grad-cam package is known to be right.
    """

    def __init__(self, model: FusionNet, exam: torch.Tensor, view: int, side: str) -> None:
        super().__init__()
        self.model, self.view, self.side = model, view, SIDES.index(side)
        with torch.no_grad():
            self.fixed = model.view_features(exam[None])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        own = self.model.encoder(image)
        slots = [own if i == self.view else self.fixed[:, i] for i in range(len(VIEW_ORDER))]
        lp = self.model.fuse(torch.stack(slots, dim=1))["breast_logprob"]
        return (lp[:, self.side, 1] - lp[:, self.side, 0])[:, None]


@pytest.mark.parametrize("fusion", FUSIONS)
def test_fusion_maps_equal_the_package_on_each_view_alone(fusion):
    model = fusion_model(fusion)
    exam = _images(4, 2, 128, 64, seed=11)
    layer = default_target_layer(model.encoder)
    maps = fusion_cams(model, exam[None], sides=SIDES)
    for side in SIDES:
        assert maps[side].shape == (1, 4, 128, 64)
        for view, key in enumerate(VIEW_ORDER):
            wrapper = OneViewScore(model, exam, view, side)
            with GradCAMPlusPlus(model=wrapper, target_layers=[layer]) as reference:
                expected = reference(input_tensor=exam[view][None], targets=[ClassifierOutputTarget(0)])[0]
            np.testing.assert_allclose(maps[side][0, view], expected, atol=1e-5, err_msg=f"{side} {key}")
    if fusion == "none":  # the other breast's views do not enter a breast's score
        assert not maps["L"][0, 2:].any() and not maps["R"][0, :2].any()
        assert maps["L"][0, :2].max() > 0.99 and maps["R"][0, 2:].max() > 0.99


def test_cam_for_exam_batches_and_the_single_exam_agree_and_leave_the_model_untouched():
    model = fusion_model("mf_concat", seed=2)
    model.train()
    exams = _images(2, 4, 2, 128, 64, seed=12)
    batched = fusion_cams(model, exams, sides=("R",))["R"]
    single = cam_for_exam(model, exams[1], "R")
    assert single.shape == (4, 128, 64) and single.min() >= 0 and single.max() <= 1
    np.testing.assert_allclose(batched[1], single, atol=1e-5)
    assert model.training, "the model's mode is restored"
    assert all(p.grad is None for p in model.parameters()), "no gradient is left in the parameters"
    benign = cam_for_exam(model, exams[1], "R", target="benign")
    assert not np.allclose(benign, single)
    with pytest.raises(ValueError, match="unknown side"):
        cam_for_exam(model, exams[1], "X")
    with pytest.raises(ValueError, match="one exam"):
        cam_for_exam(model, exams, "L")
    with pytest.raises(ValueError, match="input channel"):
        cam_for_exam(model, exams[1][:, :1], "L")


def test_own_breast_maps_pick_each_views_breast():
    left = np.zeros((4, 2, 2))
    right = np.ones((4, 2, 2))
    picked = own_breast_maps({"L": left, "R": right})
    assert picked[:2].sum() == 0 and (picked[2:] == 1).all()


def test_pointing_game_on_hand_made_maps():
    cams = np.zeros((3, 6, 5))
    masks = np.zeros((3, 6, 5), dtype=bool)
    masks[:, 1:3, 1:3] = True
    cams[0, 2, 2] = 1.0  # peak inside the lesion
    cams[1, 5, 4] = 1.0  # peak far away
    cams[2, 3, 3] = 1.0  # peak one pixel diagonally off the lesion corner (2, 2)
    assert pointing_hits(cams, masks).tolist() == [True, False, False]
    assert pointing_game(cams, masks) == pytest.approx(1 / 3)
    assert pointing_hits(cams, masks, tolerance=2).tolist() == [True, False, True]
    flat = np.zeros((1, 6, 5))  # an all-zero map points nowhere
    assert not pointing_hits(flat, masks[:1])[0]
    with pytest.raises(ValueError, match="empty"):
        pointing_game(cams, np.zeros_like(masks))
    with pytest.raises(ValueError, match="same shape"):
        pointing_game(cams, masks[:2])


def test_exam_figure_has_le_des_and_overlay_for_both_breasts(tmp_path):
    exam = _images(4, 2, 128, 64, seed=13)
    per_side = {side: _images(4, 128, 64, seed=i).numpy() for i, side in enumerate(SIDES)}
    cams = own_breast_maps(per_side)
    fig = plot_exam_cams(exam, cams, scores={"L": 0.12, "R": 0.87})
    titles = [ax.get_title() for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(titles) == 12
    for key in VIEW_ORDER:
        for column in ("LE", "DES", "Grad-CAM++"):
            assert any(t.endswith(f"{key} {column}") for t in titles), (key, column)
    assert sum("p(malignant) R = 0.87" in t for t in titles) == 1
    [path] = save_figure(fig, tmp_path / "exam.png", dpi=150, tight=True)
    with Image.open(path) as image:
        assert image.size[0] > image.size[1] > 100
    le_only = plot_exam_cams(exam[:, :1], cams)
    assert len(le_only.axes) == 8 + 1  # and the colour bar
    with pytest.raises(ValueError, match="cams must be"):
        plot_exam_cams(exam, cams[:, :64])


def test_explain_exam_gives_probabilities_maps_and_a_figure(tmp_path):
    model = fusion_model("mf_average", seed=3)
    exam = _images(4, 2, 128, 64, seed=14)
    result = explain_exam(model, exam)
    with torch.no_grad():
        expected = malignant_probability(model(exam[None]))[0]
    assert result["scores"] == pytest.approx(dict(zip(SIDES, expected.tolist(), strict=True)), abs=1e-6)
    np.testing.assert_allclose(result["cams"]["L"], cam_for_exam(model, exam, "L"), atol=1e-5)
    np.testing.assert_allclose(result["own"][2:], result["cams"]["R"][2:])
    fig = plot_exam_cams(exam, result["own"], scores=result["scores"])
    assert save_figure(fig, tmp_path / "exam.pdf")[0].stat().st_size > 1000


@pytest.mark.parametrize(("size", "expected"), [((512, 256), (32, 16)), ((1024, 512), (64, 32)),
                                               ((128, 64), (64, 32)), ((64, 32), (32, 16))])
def test_default_layer_is_the_papers_at_its_size_and_the_second_blocks_below(size, expected):
    """At 512 x 256 the paper's layer (last block, 32 x 16); smaller inputs the second block (half the input),
    the map that pointed at lesions on the smoke validation split; larger ones keep the paper's rule."""
    model = build_model("mf_concat", 2, width=0.0625, global_pool=True, head=(16, 8), input_size=size)
    encoder = model.encoder
    layer = default_target_layer(encoder)
    shapes = []
    handle = layer.register_forward_hook(lambda module, inputs, out: shapes.append(tuple(out.shape[-2:])))
    with torch.no_grad():
        encoder.eval()(torch.zeros(1, 2, *size))
    handle.remove()
    assert shapes == [expected]
    relus = [m for m in encoder.features if isinstance(m, nn.ReLU)]
    if size == (512, 256):
        assert layer is relus[-1]
    if size == (128, 64):
        assert layer is relus[3]  # two convolutions per block: the second block's last ReLU


def test_randomised_copy_reinitialises_every_layer_and_leaves_the_model_and_rng_alone():
    model = fusion_model("mf_concat", seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    control = cams.randomised_copy(model, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # the trained model is untouched
    weights = [k for k, v in control.state_dict().items() if k.endswith("weight") and v.dim() > 1]
    assert weights and all(not torch.equal(control.state_dict()[k], before[k]) for k in weights)
    bn_means = [k for k in before if k.endswith("running_mean")]
    assert bn_means and all(torch.count_nonzero(control.state_dict()[k]) == 0 for k in bn_means)
    again = cams.randomised_copy(model, seed=5)
    assert all(torch.equal(again.state_dict()[k], control.state_dict()[k]) for k in weights)
    assert not control.training


def test_cam_figure_has_a_colour_bar_and_room_for_a_title_above_the_panels():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = plot_exam_cams(torch.rand(4, 2, 32, 16), np.random.default_rng(0).random((4, 32, 16)),
                            {"L": 0.9, "R": 0.1})
    title = figure.suptitle("internal test set: case P-0123abcd")
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    panel_titles = [ax.title.get_window_extent(renderer) for ax in figure.axes if ax.get_title()]
    assert len(panel_titles) == 12
    assert title.get_window_extent(renderer).y0 >= max(box.y1 for box in panel_titles)
    colour_bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    assert len(colour_bars) == 1 and colour_bars[0].get_ylim() == (0.0, 1.0)


def test_pointing_game_baselines_find_a_bright_lesion_and_expect_its_area_share():
    """The brightest-point baseline hits a lesion that is the brightest thing in the breast and misses a dim
    one; the random-point baseline is the lesion's share of the breast, checked by Monte Carlo."""
    rng = np.random.default_rng(0)
    breasts = np.zeros((2, 40, 20), bool)
    breasts[:, 5:35, 2:18] = True
    masks = np.zeros_like(breasts)
    masks[:, 10:16, 5:11] = True
    des = rng.normal(0.3, 0.02, breasts.shape)
    des[0][masks[0]] += 0.5  # enhancing lesion
    des[1][20:26, 12:17] += 0.5  # enhancement elsewhere (a benign focus), the lesion dim
    hits = cams.pointing_hits(cams.brightest_point_maps(des, breasts), masks)
    assert hits.tolist() == [True, False]
    expected = cams.random_point_hit_rate(breasts, masks)
    assert expected == pytest.approx(36 / (30 * 16))
    points = [(rng.integers(5, 35), rng.integers(2, 18)) for _ in range(20000)]
    assert np.mean([masks[0][r, c] for r, c in points]) == pytest.approx(expected, abs=0.01)


def test_the_overlay_is_perceptually_uniform_and_transparent_where_the_map_is_low():
    heat = np.linspace(0, 1, 11)[None]
    rgba = cam_overlay(heat, alpha=0.8)
    assert rgba[0, 0, 3] == 0 and rgba[0, -1, 3] == pytest.approx(0.8)
    assert np.all(np.diff(rgba[0, :, 3]) > 0)  # more opaque where the map is higher
    luminance = rgba[0, :, :3] @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luminance) > 0)  # inferno brightens monotonically, unlike jet
    figure = plot_exam_cams(torch.rand(4, 2, 32, 16), np.random.default_rng(0).random((4, 32, 16)))
    overlays = [image for ax in figure.axes for image in ax.get_images()
                if np.asarray(image.get_array()).ndim == 3]
    assert len(overlays) == 4 and all(np.asarray(o.get_array())[..., 3].max() <= 0.75 for o in overlays)
