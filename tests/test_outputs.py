"""`cemlib.core.outputs`: output locations checked before work starts, write failures in one line."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import uuid

import pytest
import torch

from cemlib.core import outputs


@contextlib.contextmanager
def small_filesystem(tmp_path, size: str, read_only: bool = False):
    """A real tmpfs of `size` mounted under tmp_path (needs root; skips elsewhere)."""
    mount = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_folder_given_for_a_file_and_file_given_for_a_folder(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(outputs.OutputLocationError, match="is a folder; give a file path"):
        outputs.check_output_file(tmp_path)
    with pytest.raises(outputs.OutputLocationError, match="a_file: is a file; give a folder path"):
        outputs.check_output_folder(tmp_path / "a_file")
    with pytest.raises(outputs.OutputLocationError, match="is a file, not a folder"):
        outputs.check_output_file(tmp_path / "a_file" / "scores.csv")


def test_existing_folder_refused_where_it_must_be_new(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.csv").write_text("x")
    assert outputs.check_output_folder(tmp_path / "out") == tmp_path / "out"
    with pytest.raises(outputs.OutputLocationError, match="exists and is not empty"):
        outputs.check_output_folder(tmp_path / "out", must_be_empty=True)
    with pytest.raises(outputs.OutputLocationError, match="exists; delete it"):
        outputs.check_output_file(tmp_path / "out" / "old.csv", overwrite=False)


def test_nothing_is_created_by_the_check(tmp_path):
    outputs.check_output_folder(tmp_path / "new" / "deeper")
    outputs.check_output_file(tmp_path / "new2" / "x.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_read_only_location(tmp_path):
    with small_filesystem(tmp_path, "1m", read_only=True) as mount:
        with pytest.raises(outputs.OutputLocationError, match="read-only file system"):
            outputs.check_output_folder(mount / "reports")


def test_full_disk_before_and_during_writing(tmp_path):
    with small_filesystem(tmp_path, "1m") as mount:
        with pytest.raises(outputs.OutputLocationError, match=r"only 1\.0 MiB free"):
            outputs.check_output_file(mount / "model.pt")
        with pytest.raises(RuntimeError) as failure:
            torch.save({"w": torch.zeros(1_000_000)}, mount / "model.pt")
        assert outputs.describe_write_failure(failure.value, mount / "model.pt") == (
            f"{mount / 'model.pt'}: no space left on the device (disk full)")


def test_os_errors_in_plain_words(tmp_path):
    error = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.npy"))
    expected = f"{tmp_path / 'x.npy'}: no space left on the device (disk full)"
    assert outputs.describe_write_failure(error) == expected
