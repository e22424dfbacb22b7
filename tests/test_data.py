"""Tests of the datasets over the cache, the augmentation and the seeded loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from cemlib.core.fileio import sha256_file
from cemlib.core.views import VIEW_ORDER
from cemlib.data.cache import CacheError, TensorCache
from cemlib.data.datasets import (
    Augment,
    ImageDataset,
    PatientDataset,
    channel_statistics,
    item_generator,
    make_loader,
    rotate_images,
    seed_for,
    set_loader_epoch,
)
from cemlib.pixels.settings import PreprocessSettings
from cemlib.study.bench import benchmark_loader
from tests.factories import write_mg_dicom
from tests.test_cache import RAW_SHAPE, SIZE, make_manifest

# ------------------------------------------------------------------------------------------ augmentation


def test_flips_are_exact_flips() -> None:
    x = torch.rand(2, 9, 6)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(Augment(hflip=1.0, vflip=0.0, rotate=0.0)(x, gen), torch.flip(x, dims=[-1]))
    assert torch.equal(Augment(hflip=0.0, vflip=1.0, rotate=0.0)(x, gen), torch.flip(x, dims=[-2]))
    assert torch.equal(Augment(hflip=1.0, vflip=1.0, rotate=0.0)(x, gen), torch.flip(x, dims=[-2, -1]))


def test_rotation_zero_and_no_flip_is_identity() -> None:
    x = torch.rand(4, 2, 9, 6)
    assert torch.equal(Augment(hflip=0.0, vflip=0.0, rotate=0.0)(x, torch.Generator().manual_seed(3)), x)
    assert torch.equal(rotate_images(x, torch.zeros(4)), x)


@pytest.mark.parametrize("angle", [7.5, -10.0, 90.0])
def test_rotation_matches_torchvision(angle: float) -> None:
    x = torch.rand(1, 2, 40, 24, generator=torch.Generator().manual_seed(1))
    ours = rotate_images(x, torch.tensor([angle]))
    reference = TF.rotate(x, angle, interpolation=InterpolationMode.BILINEAR)
    # same geometry (counter-clockwise about the centre, rigid on a non-square image); borders may differ
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(ours[inner].numpy(), reference[inner].numpy(), atol=1e-4)


def test_augmentation_is_reproducible_and_varies_with_seed() -> None:
    x = torch.rand(4, 2, 16, 8)
    aug = Augment()
    first = aug(x, item_generator(5, 2, 11))
    assert torch.equal(first, aug(x, item_generator(5, 2, 11)))
    others = [aug(x, item_generator(5, epoch, 11)) for epoch in range(3, 8)]
    assert any(not torch.equal(first, other) for other in others)
    assert seed_for(0, 1, 2) != seed_for(0, 2, 1)


def test_same_transform_for_all_views_by_default_and_per_view_differs() -> None:
    view = torch.rand(1, 2, 16, 8)
    patient = view.expand(4, -1, -1, -1).clone()
    shared, separate = Augment(), Augment(per_view=True)
    for index in range(10):
        out = shared(patient, item_generator(0, 0, index))
        assert all(torch.equal(out[0], out[i]) for i in range(1, 4))
    differs = [
        any(not torch.equal(out[0], out[i]) for i in range(1, 4))
        for out in (separate(patient, item_generator(0, 0, index)) for index in range(10))
    ]
    assert all(differs)  # the angles alone differ between views


def test_flip_probabilities_are_respected() -> None:
    aug = Augment(hflip=0.5, vflip=0.2, rotate=10.0)
    params = aug.sample(20000, torch.Generator().manual_seed(0))
    assert abs(params.hflip.float().mean().item() - 0.5) < 0.02
    assert abs(params.vflip.float().mean().item() - 0.2) < 0.02
    assert params.angle.min() >= -10.0 and params.angle.max() <= 10.0
    assert params.angle.min() < -9.5 and params.angle.max() > 9.5


def test_batch_augmentation_matches_per_item_and_keeps_views_together() -> None:
    x = torch.rand(3, 4, 2, 16, 8)
    aug = Augment()
    single = aug(x[0], torch.Generator().manual_seed(9))
    batched = aug.batch(x[:1], torch.Generator().manual_seed(9))
    torch.testing.assert_close(batched[0], single)
    same_views = torch.rand(1, 2, 16, 8).expand(4, -1, -1, -1)
    out = aug.batch(same_views.unsqueeze(0).repeat(3, 1, 1, 1, 1), torch.Generator().manual_seed(1))
    for b in range(3):
        assert all(torch.equal(out[b, 0], out[b, i]) for i in range(1, 4))


def test_augment_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="hflip"):
        Augment(hflip=1.5)
    with pytest.raises(ValueError, match="rotate"):
        Augment(rotate=-1)


# ------------------------------------------------------------------------------------------ datasets


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> tuple:
    root = tmp_path_factory.mktemp("data")
    manifest = make_manifest(root / "cohort", patients=4, labels=[(1, 0), (0, 1), (0, 0), (1, 1)],
                             mask_views=(("R", "MLO"),))
    manifest.breasts.loc[manifest.breasts["patient_id"] == "P003", "split"] = "test"
    cache = TensorCache(root / "cache", PreprocessSettings(size=SIZE))
    cache.fill(manifest, progress=False)
    return manifest, cache


def test_patient_dataset_views_in_view_order_and_labels_left_right(filled) -> None:
    manifest, cache = filled
    dataset = PatientDataset(manifest, cache, split="train", inputs="cem")
    assert dataset.patients == ["P000", "P001", "P002"]
    for index, patient_id in enumerate(dataset.patients):
        item = dataset[index]
        assert item["patient_id"] == patient_id
        assert item["x"].shape == (4, 2, *SIZE) and item["x"].dtype == torch.float32
        for position, name in enumerate(VIEW_ORDER):
            expected = cache.get(patient_id, name[0], name[1:])[:2]
            assert torch.equal(item["x"][position], expected)
        distinct = {tuple(item["x"][i].flatten()[:50].tolist()) for i in range(4)}
        assert len(distinct) == 4
    assert dataset[0]["y"].tolist() == [1, 0] and dataset[1]["y"].tolist() == [0, 1]
    assert dataset[0]["y"].dtype == torch.int64
    assert PatientDataset(manifest, cache, split="test")[0]["y"].tolist() == [1, 1]


def test_inputs_le_has_one_channel_and_cem_two(filled) -> None:
    manifest, cache = filled
    le = PatientDataset(manifest, cache, split="train", inputs="le")[0]["x"]
    cem = PatientDataset(manifest, cache, split="train", inputs="cem")[0]["x"]
    assert le.shape == (4, 1, *SIZE) and cem.shape == (4, 2, *SIZE)
    assert torch.equal(le[:, 0], cem[:, 0])
    image = ImageDataset(manifest, cache, split="train", inputs="le")[0]
    assert image["x"].shape == (1, *SIZE)
    with pytest.raises(ValueError, match="inputs"):
        PatientDataset(manifest, cache, inputs="des")
    with pytest.raises(ValueError, match="split"):
        PatientDataset(manifest, cache, split="training")
    assert len(PatientDataset(manifest, cache, split="val")) == 0  # a known split may be empty


def test_image_dataset_has_every_view_of_the_split_with_its_breast_label(filled) -> None:
    manifest, cache = filled
    dataset = ImageDataset(manifest, cache, split="train", inputs="cem")
    assert len(dataset) == 3 * 4
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["x"].shape == (2, *SIZE)
        breast = manifest.breasts[(manifest.breasts["patient_id"] == item["patient_id"])
                                  & (manifest.breasts["side"] == item["side"])]
        assert item["y"].item() == int(breast["label"].iloc[0])
        assert torch.equal(item["x"], cache.get(item["patient_id"], item["side"], item["view"])[:2])
    assert len(ImageDataset(manifest, cache, split=None)) == 16


def test_masks_follow_the_views(filled) -> None:
    manifest, cache = filled
    item = PatientDataset(manifest, cache, split="train", return_masks=True)[0]
    assert item["mask"].shape == (4, *SIZE)
    rmlo = VIEW_ORDER.index("RMLO")
    assert torch.equal(item["mask"][rmlo], cache.get("P000", "R", "MLO")[2])
    assert item["mask"][rmlo].max() > 0.5
    assert all(item["mask"][i].max() == 0 for i in range(4) if i != rmlo)
    augmented = PatientDataset(manifest, cache, split="train", return_masks=True,
                               augment=Augment(hflip=1.0, vflip=0.0, rotate=0.0))[0]
    assert torch.equal(augmented["mask"], torch.flip(item["mask"], dims=[-1]))
    assert torch.equal(augmented["x"], torch.flip(item["x"], dims=[-1]))


def test_dataset_augmentation_reproducible_per_epoch_and_independent_of_workers(filled) -> None:
    manifest, cache = filled
    dataset = PatientDataset(manifest, cache, split="train", augment=Augment(), seed=7)
    first = dataset[1]["x"]
    assert torch.equal(first, dataset[1]["x"])
    assert torch.equal(first, dataset[(0, 1)]["x"])  # (epoch, index) as the loader's sampler passes it
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[1]["x"])
    epochs: dict[int, list] = {}
    for workers in (0, 2):
        loader = make_loader(dataset, batch_size=2, shuffle=True, seed=11, workers=workers)
        for epoch in (3, 4):  # the same loader across epochs, keyed to each epoch as training does
            set_loader_epoch(loader, 11, epoch)
            epochs.setdefault(epoch, []).append([(b["patient_id"], b["x"]) for b in loader])
    for epoch, (serial, parallel) in epochs.items():
        for (ids0, x0), (ids2, x2) in zip(serial, parallel, strict=True):
            assert ids0 == ids2 and torch.equal(x0, x2), f"epoch {epoch} differs with workers"
    x3 = torch.cat([x for _, x in epochs[3][0]])
    x4 = torch.cat([x for _, x in epochs[4][0]])
    assert not torch.equal(x3, x4)
    order3 = [pid for ids, _ in epochs[3][0] for pid in ids]
    order4 = [pid for ids, _ in epochs[4][0] for pid in ids]
    assert sorted(order3) == sorted(order4) == dataset.patients
    fresh = make_loader(dataset, 1, shuffle=True, seed=11)
    set_loader_epoch(fresh, 11, 3)
    assert [pid for b in fresh for pid in b["patient_id"]] == order3  # resumable: depends on (seed, epoch)


def test_ffdm_manifest_works_for_le_and_refuses_cem(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "ffdm", patients=2, energies=("LE",), dataset="inbreast_like")
    cache = TensorCache(tmp_path / "cache", PreprocessSettings(size=SIZE))
    assert cache.fill(manifest, progress=False).built == 8
    item = PatientDataset(manifest, cache, inputs="le")[0]
    assert item["x"].shape == (4, 1, *SIZE)
    with pytest.raises(ValueError, match="no DES"):
        PatientDataset(manifest, cache, inputs="cem")


def test_patients_failing_preprocessing_are_not_served(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "cohort", patients=3)
    bad = manifest.root / "P002/R_CC_LE.dcm"
    write_mg_dicom(bad, np.full(RAW_SHAPE, 90, dtype=np.uint16), ImageLaterality="R", ViewPosition="CC")
    manifest.images.loc[manifest.images["path"] == "P002/R_CC_LE.dcm", "sha256"] = sha256_file(bad)
    cache = TensorCache(tmp_path / "cache", PreprocessSettings(size=SIZE))
    assert cache.fill(manifest, progress=False).failed == 1
    dataset = PatientDataset(manifest, cache)
    assert dataset.patients == ["P000", "P001"] and "P002" in dataset.excluded
    assert len(ImageDataset(manifest, cache)) == 8


def test_unfilled_cache_is_a_clear_error(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "cohort", patients=1)
    cache = TensorCache(tmp_path / "cache", PreprocessSettings(size=SIZE))
    with pytest.raises(CacheError, match="cem preprocess"):
        PatientDataset(manifest, cache)


def test_benchmark_loader_reports_throughput(filled) -> None:
    manifest, cache = filled
    result = benchmark_loader(manifest, cache, inputs="cem", batch_size=2, max_batches=4)
    assert result["batches"] == 4 and result["patients"] == 8
    assert result["images_per_s"] == pytest.approx(8 * result["patients_per_s"], rel=0.01)


def test_synthetic_cohort_end_to_end(tmp_path: Path) -> None:
    from cemlib.data.sources import scan
    from cemlib.synthetic import write_cohort

    write_cohort(tmp_path / "cohort", patients=4, scale=0.03, workers=0)
    manifest = scan(tmp_path / "cohort", "ge", workers=1)
    cache = TensorCache(tmp_path / "cache", PreprocessSettings(size=SIZE))
    result = cache.fill(manifest, progress=False)
    assert (result.built, result.failed) == (16, 0), result.exclusions
    dataset = PatientDataset(manifest, cache, inputs="cem", return_masks=True)
    assert len(dataset) == 4
    labels = manifest.breasts.set_index(["patient_id", "side"])["label"]
    for index, patient_id in enumerate(dataset.patients):
        item = dataset[index]
        assert item["y"].tolist() == [labels[(patient_id, "L")], labels[(patient_id, "R")]]
        assert item["x"].shape == (4, 2, *SIZE) and 0.0 <= item["x"].min() and item["x"].max() <= 1.0
        # every breast faces the same way after preprocessing: the chest wall (tissue) is on the left
        for view in range(4):
            le = item["x"][view, 0]
            assert le[:, : SIZE[1] // 4].mean() > le[:, -SIZE[1] // 4 :].mean()


def test_unfilled_cache_error_names_the_image_by_its_label_not_its_file(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "cohort", patients=1)
    cache = TensorCache(tmp_path / "cache", PreprocessSettings(size=SIZE))
    with pytest.raises(CacheError) as failure:
        PatientDataset(manifest, cache)
    message = str(failure.value)
    patient = manifest.images["patient_id"].iloc[0]
    assert f"(first: {manifest.dataset}/{patient} L CC LE)" in message
    assert str(tmp_path / "cohort") not in message and ".dcm" not in message


def test_channel_statistics_match_numpy_over_every_pixel():
    """The input statistics stage 1 standardises with: per channel, over every pixel of every item."""
    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.random((2, 8, 4), dtype=np.float32) * (k + 1)) for k in range(5)]
    mean, std = channel_statistics([{"x": x} for x in images])
    stacked = np.stack([x.numpy() for x in images])
    assert np.allclose(mean.numpy(), stacked.mean(axis=(0, 2, 3)), atol=1e-6)
    assert np.allclose(std.numpy(), stacked.std(axis=(0, 2, 3)), atol=1e-6)
    with pytest.raises(ValueError, match="no images"):
        channel_statistics([])
