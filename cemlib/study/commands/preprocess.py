"""`cem preprocess`: fill the preprocessed tensor cache of a manifest (settings from a profile and --set)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

from cemlib.core.outputs import check_output_folder
from cemlib.core.settings import (
    SettingsError,
    add_override_option,
    load_profile,
    non_negative_int,
    parse_overrides,
)
from cemlib.data.cache import TensorCache, apply_exclusions
from cemlib.data.manifest import Manifest
from cemlib.pixels.settings import PreprocessSettings


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem preprocess`."""
    parser.add_argument("--profile", help="profile name or YAML (default: smoke unless --manifest is given)")
    parser.add_argument("--manifest", help="manifest folder (default: the profile's data.manifest)")
    parser.add_argument("--cache", help="cache folder (default: the profile's preprocess.cache)")
    parser.add_argument("--workers", type=non_negative_int, default=min(4, os.cpu_count() or 1),
                        help="parallel processes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    # Accepted for old scripts: the manifest is never rewritten now (failures stay with the cache).
    parser.add_argument("--keep-manifest", action="store_true", help=argparse.SUPPRESS)
    add_override_option(parser, "preprocess.size=[128,64]")


def settings_from_args(args: argparse.Namespace) -> tuple[PreprocessSettings, Path, Path]:
    """Preprocessing settings, manifest folder and cache folder: a profile with its --set overrides, or,
    with --manifest and no --profile, the pipeline's defaults with the --set preprocess.* overrides."""
    overrides = parse_overrides(getattr(args, "overrides", None) or [])
    if args.profile or not args.manifest:
        profile: dict[str, Any] = load_profile(args.profile or "smoke", overrides).as_dict()
    else:
        profile = {"preprocess": preprocess_overrides(overrides)}
    section = dict(profile.get("preprocess") or {})
    manifest_dir = args.manifest or (profile.get("data") or {}).get("manifest")
    cache_dir = args.cache or section.get("cache")
    if not manifest_dir or not cache_dir:
        raise ValueError("give --profile, or both --manifest and --cache")
    return PreprocessSettings.from_profile(profile), Path(manifest_dir), Path(cache_dir)


def preprocess_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The preprocess section that --set gives without a profile; other keys are refused by name."""
    fields = {f.name for f in dataclasses.fields(PreprocessSettings)}
    section = {}
    for key, value in overrides.items():
        name = key.removeprefix("preprocess.")
        if not key.startswith("preprocess.") or name not in fields:
            raise SettingsError(f"--set {key}: without --profile only preprocess.<setting> applies, one of "
                                f"{', '.join(sorted(fields))}")
        section[name] = value
    return section


def run_cli(args: argparse.Namespace) -> int:
    """Fill the cache for a manifest; print what was built, skipped and failed."""
    settings, manifest_dir, cache_dir = settings_from_args(args)
    if not (manifest_dir / "images.csv").exists():
        where = "--manifest" if args.manifest else "data.manifest"
        raise FileNotFoundError(f"{where}: no manifest in {manifest_dir} (run `cem manifest` first, or "
                                "`cem reproduce`, which writes the profile's cohort and manifest)")
    check_output_folder(cache_dir)
    manifest = Manifest.load(manifest_dir)
    cache = TensorCache(cache_dir, settings)
    result = cache.fill(manifest, workers=args.workers, progress=not args.no_progress)
    print(f"cache {cache.folder}: {result.summary()}")
    for row in result.exclusions.itertuples():
        print(f"  excluded {row.dataset}/{row.patient_id}: {row.reason}")
    if dropped := apply_exclusions(manifest, result.exclusions):
        print(f"{len(dropped)} patient(s) left out with these settings (the manifest is unchanged)")
    return 0
