"""Study profiles: one YAML file per scale (smoke on a CPU, paper on a GPU) read into a typed, frozen tree.

`load_profile` builds the tree once: YAML, then the `--set KEY=VALUE` overrides, every key checked. An
unknown key is refused naming the closest valid one (a typo never passes silently) and a value of the
wrong type is refused naming the type it needs; both raise SettingsError, which the `cem` command turns
into exit code 2. Relative paths are made absolute against the work folder (cemlib.core.resources.work_root).

Code reads the tree by attribute (`profile.train.batch_size`). Each node is also a read-only mapping of
the keys set (`profile["train"]["batch_size"]`, `profile.get("augment")`), for readers that take a plain
section, and `as_dict()` gives the plain nested dict.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cemlib.core import variants
from cemlib.core.resources import profiles_dir, work_root
from cemlib.core.vocab import PAPER_HEAD


class SettingsError(ValueError):
    """A profile key or value that is not allowed (unknown key, wrong type)."""


@dataclass(frozen=True)
class Section(Mapping[str, Any]):
    """A node of the settings tree: typed fields, and a read-only mapping of the fields that are set."""

    def __getitem__(self, key: str) -> Any:
        value = getattr(self, key, None) if key in self._field_names() else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._field_names() if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def as_dict(self) -> dict[str, Any]:
        """The set keys as plain nested dicts and lists (YAML/JSON ready)."""
        return {name: _plain(getattr(self, name)) for name in self}


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.as_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class SynthSettings(Section):
    """A synthetic cohort or replica: patients, detector scale and seed (defaults: cemlib.study.prepare)."""

    patients: int | None = None
    scale: float | None = None
    seed: int | None = None
    control: bool | None = None  # the positive control: a planted, unambiguous sign (internal cohort only)


@dataclass(frozen=True)
class DataSettings(Section):
    """The internal dataset: synthetic (written when missing) or a real layout read from `root`."""

    dataset: str = "synthetic"  # synthetic | auto | ge | mfmodel | cddcesm | inbreast
    root: str | None = None
    manifest: str | None = None
    split: tuple[float, ...] = (0.7, 0.1, 0.2)
    synth: SynthSettings = field(default_factory=SynthSettings)


@dataclass(frozen=True)
class PreprocessOverrides(Section):
    """Preprocessing settings one dataset changes (its detector's grey levels)."""

    window: str | None = None
    window_range: tuple[float, ...] | None = None
    window_source: str | None = None


@dataclass(frozen=True)
class ExternalSettings(Section):
    """An external validation set: its release folder, and how to write a replica when asked."""

    root: str | None = None
    synth: SynthSettings | None = None
    preprocess: PreprocessOverrides | None = None


@dataclass(frozen=True)
class PreprocessSettingsSection(Section):
    """Preprocessing (cemlib.pixels.settings.PreprocessSettings fields, unset ones keeping its defaults),
    and where the cache lives and how many processes fill it."""

    size: tuple[int, ...] | None = None
    window: str | None = None
    window_range: tuple[float, ...] | None = None
    window_source: str | None = None
    peak_fraction: float | None = None
    upper_rank: int | None = None
    background: float | None = None
    min_foreground: float | None = None
    min_size_fraction: float | None = None
    des_window: str | None = None
    des_window_range: tuple[float, ...] | None = None
    detector_range: tuple[float, ...] | None = None
    flip_right: bool | None = None
    check_orientation: bool | None = None
    version: str | None = None
    cache: str | None = None
    workers: int | None = None


@dataclass(frozen=True)
class ModelSettings(Section):
    """The network: VGG16-BN trunk width, head sizes, pooling, dropout, pretrained trunk."""

    width: float = 1.0
    global_pool: bool = False
    head: tuple[int, ...] = PAPER_HEAD
    dropout: float = 0.5
    pool: str = "avg"  # global pooling when global_pool is set: avg | max
    standardise: bool = False  # inputs standardised per channel with the training images' mean and SD
    pretrained: str | None = None


@dataclass(frozen=True)
class TrainSettings(Section):
    """Both training stages (cemlib.training.loop.StageRun carries them into `fit`)."""

    stage1_epochs: int = 50
    stage2_epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (10, 30, 40)
    gamma: float = 0.5
    patience: int = 5
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    workers: int = 0
    deterministic: bool | None = None  # None: deterministic on the CPU, fastest kernels on CUDA
    progress: bool = True
    check_every: int | None = None  # None: 1 on the CPU, 25 on CUDA
    seed: int | None = None  # training seed (init, data order, augmentation); None: the top-level seed


@dataclass(frozen=True)
class AugmentSettings(Section):
    """Training augmentation (cemlib.data.datasets.Augment; unset ones keep the paper's values)."""

    hflip: float | None = None
    vflip: float | None = None
    rotate: float | None = None
    per_view: bool | None = None


@dataclass(frozen=True)
class Settings(Section):
    """A whole profile."""

    name: str = "profile"
    device: str = "cpu"
    seed: int = 0
    threads: int | None = None  # torch's CPU threads; float results depend on it (None: torch's default)
    replicates: int = 1  # train every model under seeds train.seed + 0 .. replicates - 1
    des_window_ablation: str | None = None  # another DES window rule the CEM models also train under
    data: DataSettings = field(default_factory=DataSettings)
    external: dict[str, ExternalSettings] = field(default_factory=dict)
    preprocess: PreprocessSettingsSection = field(default_factory=PreprocessSettingsSection)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    augment: AugmentSettings | None = None
    reports: str | None = None
    runs: str | None = None
    source: str | None = None  # the YAML file read (set by load_profile, not by the YAML)
    root: str | None = None  # the work folder relative paths resolved against (likewise)
    variant: str | None = None  # the suffix of this run's own folders when settings differ from the file


#: Keys a profile cannot set: load_profile fills them in.
DERIVED_KEYS = {("source",), ("root",), ("variant",)}
#: Values that are paths; relative ones resolve against the work folder.
PATH_KEYS = {("data", "root"), ("data", "manifest"), ("preprocess", "cache"), ("reports",), ("runs",)}
DOTTED_PATH_KEYS = frozenset(".".join(key) for key in PATH_KEYS)


# ------------------------------------------------------------------------------------------ building


def build_settings(tree: Mapping[str, Any], where: str = "profile") -> Settings:
    """The Settings tree of a plain nested mapping; SettingsError for unknown keys and wrong types."""
    if not isinstance(tree, Mapping):
        raise SettingsError(f"{where}: a profile must be a YAML mapping, got {type(tree).__name__}")
    for key in DERIVED_KEYS:
        if key[0] in tree:
            raise SettingsError(f"{where}: '{key[0]}' is set by cemlib, not by the profile")
    return _build(Settings, tree, "", where)


def _build(cls: type[Section], values: Mapping[str, Any], prefix: str, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = cls._field_names()
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise SettingsError(_unknown_key_message(str(key), names, prefix, where))
        kwargs[key] = _convert(hints[key], value, dotted, where)
        _check_minimum(dotted, kwargs[key], where)
    return cls(**kwargs)


#: The least value of each counting setting (None always allowed where the type permits it).
MINIMUMS = {"replicates": 1, "threads": 1, "train.batch_size": 1, "train.workers": 0, "preprocess.workers": 0}


def _check_minimum(dotted: str, value: Any, where: str) -> None:
    """SettingsError when a counting setting is below its least value."""
    least = MINIMUMS.get(dotted)
    if least is not None and value is not None and value < least:
        raise SettingsError(f"{where}: setting '{dotted}' must be at least {least}, got {value!r}")


def did_you_mean(word: str, choices: list[str] | tuple[str, ...], prefix: str = "") -> str:
    """"; did you mean 'smoke'?" for the choice closest to a mistyped word, "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


def _unknown_key_message(key: str, names: tuple[str, ...], prefix: str, where: str) -> str:
    hint = did_you_mean(key, names, prefix) or f"; valid keys here: {', '.join(names)}"
    return f"{where}: unknown setting '{prefix}{key}'{hint}"


def _convert(hint: Any, value: Any, dotted: str, where: str) -> Any:
    """`value` checked against the field type `hint` (lists become tuples); SettingsError if it fails."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, dotted, where)
    if isinstance(hint, type) and issubclass(hint, Section):
        if not isinstance(value, Mapping):
            raise _type_error(dotted, "a mapping of settings", value, where)
        return _build(hint, value, f"{dotted}.", where)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _type_error(dotted, "a mapping", value, where)
        return {str(k): _convert(args[1], v, f"{dotted}.{k}", where) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _type_error(dotted, f"a list of {args[0].__name__} values", value, where)
        return tuple(_convert(args[0], v, f"{dotted}[{i}]", where) for i, v in enumerate(value))
    return _scalar(hint, value, dotted, where)


def _scalar(hint: type, value: Any, dotted: str, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise _type_error(dotted, _TYPE_WORDS.get(hint, str(hint)), value, where)


_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def _type_error(dotted: str, wanted: str, value: Any, where: str) -> SettingsError:
    return SettingsError(f"{where}: setting '{dotted}' must be {wanted}, got {value!r} "
                         f"({type(value).__name__})")


# ------------------------------------------------------------------------------------------ loading


def profile_path(name_or_path: str | Path) -> Path:
    """Resolve a profile name ('smoke', 'paper') or a YAML path to an existing file."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"}:
        if not candidate.exists():
            raise FileNotFoundError(f"profile file not found: {candidate}")
        return candidate.resolve()
    folder = profiles_dir()
    named = folder / f"{name_or_path}.yaml"
    if not named.exists():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise SettingsError(f"unknown profile '{name_or_path}'{did_you_mean(str(name_or_path), known)} "
                            f"(profiles: {', '.join(known)}, or a path to a .yaml file)")
    return named


def load_profile(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None,
                 workdir: str | Path | None = None) -> Settings:
    """Read a profile, apply dotted-key overrides, check every key and type, make its paths absolute."""
    path = profile_path(name_or_path)
    with open(path) as fh:
        tree = _yaml_value(fh.read(), str(path))
    if not isinstance(tree, dict):
        raise SettingsError(f"{path}: a profile must be a YAML mapping")
    root = work_root(path, workdir)
    written = copy.deepcopy(tree)
    _resolve_paths(written, root)
    written = build_settings(written, str(path))  # the file alone first, so its own mistakes name the file
    # Copies of the override values: a later "a.b.c" override must not write into the caller's "a.b" dict.
    for dotted, value in copy.deepcopy(dict(overrides or {})).items():
        _set_dotted(tree, dotted, value)
    _resolve_paths(tree, root)
    where = f"{path} with --set {', '.join(overrides)}" if overrides else str(path)
    settings = build_settings(tree, where)
    # Settings that differ from the file's: the folders they affect get their own name (cemlib.core.variants).
    tree, tag = variants.fork(written.as_dict(), settings.as_dict(), DOTTED_PATH_KEYS)
    if tag is not None:
        settings = build_settings(tree, where)
    return dataclasses.replace(settings, source=str(path), root=str(root), variant=tag)


def describe_variant(settings: Settings) -> str | None:
    """Where a run whose settings differ from its profile file writes, in one line; None for the file's run.

    'settings differ from profile smoke (data.synth.patients=40): this run keeps its own folders, suffix
    -3fa9c1: data/synthetic-3fa9c1, ...; other folders are only read'.
    """
    if not settings.variant or not settings.source:
        return None
    written = load_profile(settings.source, None, settings.root)
    changed, _ = variants.changes(written.as_dict(), settings.as_dict(), DOTTED_PATH_KEYS)
    changed.pop("variant", None)
    root = Path(settings.root or ".")
    shown = [Path(v) for k, v in variants.flatten(settings.as_dict()).items()
             if variants.is_path(k, DOTTED_PATH_KEYS) and f"-{settings.variant}" in str(v)]
    outer = sorted({p for p in shown if not any(p != q and p.is_relative_to(q) for q in shown)})
    folders = ", ".join(p.relative_to(root).as_posix() if p.is_relative_to(root) else p.as_posix()
                        for p in outer)
    said = ", ".join(f"{key}={value}" for key, value in changed.items())
    return (f"settings differ from profile {settings.name} ({said}): this run keeps its own folders, suffix "
            f"-{settings.variant}: {folders}; other folders are only read")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """tree['a']['b'] = value for dotted = 'a.b', creating sections as needed (checked when built)."""
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[leaf] = value


def _resolve_paths(tree: dict[str, Any], root: Path) -> None:
    for keys in PATH_KEYS:
        node: Any = tree
        for key in keys[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        value = node.get(keys[-1]) if isinstance(node, dict) else None
        if isinstance(value, str) and value:
            node[keys[-1]] = str((root / value).resolve())
    for sub in (tree.get("external") or {}).values():
        if isinstance(sub, dict) and isinstance(sub.get("root"), str) and sub["root"]:
            sub["root"] = str((root / sub["root"]).resolve())


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """['train.stage2_epochs=2', 'device=cpu'] -> {dotted key: YAML-typed value} (the CLIs' --set)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--set expects KEY=VALUE (e.g. train.stage2_epochs=2), got {pair!r}")
        overrides[key.strip()] = _yaml_value(value, f"--set {key.strip()}")
    return overrides


def _yaml_value(text: str, where: str) -> Any:
    """YAML text read safely; SettingsError in one line, naming `where` and the line, when it is not YAML.

    Python tags (!!python/...) are refused like any other error: a profile is data, never code.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SettingsError(f"{where}: not valid YAML{at}: {' '.join(str(problem).split())}") from None


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0 (a count of worker processes or threads)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_override_option(parser: argparse.ArgumentParser, example: str = "train.stage2_epochs=2") -> None:
    """The repeatable `--set KEY=VALUE` profile override shared by the CLIs (parsed into args.overrides)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a profile value, e.g. --set {example} (repeatable; default: none, "
                        "the profile as written)")
