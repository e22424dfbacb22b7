"""What the phantom draws: calcium that adds up, non-mass enhancement that spreads, Cooper's ligaments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from cemlib.synthetic import findings as fx
from cemlib.synthetic.anatomy import ShapeSpec, cooper_ligaments, view_geometry

SHAPE = ShapeSpec(cc_depth=120, cc_half_height=95, cc_center=0.5, mlo_depth=130, mlo_half_height=100,
                  mlo_center=0.55, mlo_tilt_deg=24, pect_width=80, pect_height=160)


def _cluster(spacing: float, n: int = 20, morphology: str = "fine pleomorphic", seed: int = 0,
             layers: int = 1):
    rng = np.random.default_rng(seed)
    offsets_mm = np.tile(fx.cluster_offsets("grouped", 8.0, n, rng)[:, :2], (layers, 1))
    diameters = np.tile(rng.uniform(0.3, 0.6, n), layers)
    maps = fx.render_calcifications(200.0, 200.0, morphology, offsets_mm / spacing, diameters, spacing,
                                    (400, 400))
    return maps, diameters


@pytest.mark.parametrize("spacing", [0.1, 0.6, 1.2])
def test_calcium_is_the_specks_volume_at_any_resolution(spacing):
    """Projected calcium (mm) summed over the pixels' area is the specks' volume: nothing clipped."""
    maps, diameters = _cluster(spacing)
    volume = (math.pi / 6 * diameters**3 * fx.SPECKS["fine pleomorphic"][2]).sum()
    assert maps.calcium.sum() * spacing**2 == pytest.approx(volume, rel=0.02)


def test_fine_specks_stay_separate_at_full_resolution_and_fade_when_downsampled():
    full, _ = _cluster(0.1)
    _, count = ndimage.label(full.calcium > 0.05)
    assert count >= 6  # 20 specks over 8 mm, some overlapping in projection: resolved, not one blob
    coarse, _ = _cluster(0.6)
    twice, _ = _cluster(0.6, layers=2)
    # specks overlapping in projection add up instead of saturating at a "fully covered" pixel
    np.testing.assert_allclose(twice.calcium, 2 * coarse.calcium, rtol=1e-9, atol=1e-12)
    one = [fx.render_calcifications(50.0, 50.0, "fine pleomorphic", np.zeros((1, 2)), np.array([0.4]),
                                    spacing, (100, 100)).calcium.max() for spacing in (0.1, 0.6)]
    assert one[1] < 0.5 * one[0]  # a single fine speck fades in a coarse pixel


def test_non_mass_enhancement_fills_its_extent_in_clumps():
    spacing, size_mm, level = 0.25, 30.0, 300.0
    rng = np.random.default_rng(4)
    offsets = fx.cluster_offsets("segmental", size_mm, 120, rng)[:, :2] / spacing
    maps = fx.render_region(300.0, 300.0, offsets, 3.0, 2.0, level, 0.0, spacing, rng, (600, 600))
    inside = maps.iodine[maps.mask]
    _, cols = np.nonzero(maps.mask)
    assert (cols.max() - cols.min()) * spacing > 0.7 * size_mm  # spread along the duct segment
    assert maps.iodine.max() <= 1.4 * level  # no focal peak above the clumps
    assert 0.25 < inside.std() / inside.mean() < 0.8  # clumped and stippled, neither flat nor a few foci
    assert np.mean(inside > 0.8 * level) < 0.5


@pytest.mark.parametrize("view", ["CC", "MLO"])
def test_cooper_ligaments_cross_the_subcutaneous_fat_only(view):
    spacing = 0.5
    geom = view_geometry(SHAPE, view, 500, 360, spacing)
    ligaments = cooper_ligaments(geom, spacing, np.random.default_rng(1))
    assert ligaments.min() >= 0.0 and ligaments.max() <= 1.0
    near_skin = (geom.skin_mm > 2.0) & (geom.skin_mm < 8.0) & (geom.pectoral < 0.5) & (geom.axial > 0.1)
    assert ligaments[near_skin].max() > 0.3
    assert not ligaments[geom.skin_mm > 17.0].any()  # 14 mm at most from a start under 2 mm, plus blur
    assert not ligaments[geom.pectoral > 0.5].any()
    _, strands = ndimage.label(ligaments > 0.1)
    outline_mm = math.pi * math.sqrt(SHAPE.cc_depth * SHAPE.cc_half_height)  # about the visible outline
    assert outline_mm / 13.0 / 3 < strands < 3 * outline_mm / 13.0
