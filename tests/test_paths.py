"""Stored paths back to files: tokens for names that may hold a patient's, resolved once per process."""

from __future__ import annotations

from pathlib import Path

from cemlib.data.paths import PathResolver, shared_resolver, tokenise


def test_a_token_resolves_to_its_file_and_a_miss_is_looked_up_again(tmp_path: Path):
    stored = tokenise("DOE^JANE/L_CC_LE.dcm", "GE", keep=lambda part: part.endswith(".dcm"))
    assert stored.startswith("@GE") and "DOE" not in stored
    resolver = PathResolver(tmp_path)
    assert not resolver.resolve(stored).exists()  # the folder is not there yet
    (tmp_path / "DOE^JANE").mkdir()
    (tmp_path / "DOE^JANE" / "L_CC_LE.dcm").write_bytes(b"x")
    assert resolver.resolve(stored) == tmp_path / "DOE^JANE" / "L_CC_LE.dcm"
    assert resolver.resolve("plain/name.dcm") == tmp_path / "plain" / "name.dcm"


def test_manifests_of_one_root_share_a_resolver(tmp_path: Path):
    assert shared_resolver(tmp_path) is shared_resolver(str(tmp_path))
    assert shared_resolver(tmp_path / "other") is not shared_resolver(tmp_path)
