"""Run the study notebooks end to end with papermill, resume after a failure, and export the report.

`cem reproduce --profile smoke` executes notebooks/00_cohort ... 05_cams in order into the profile's
reports folder. Each finished step records a fingerprint of its inputs (the notebook, the profile, the
cemlib sources and the previous step's fingerprint) and the data and model files it last wrote; a
rerun skips steps whose fingerprint did not change and whose files are still as written, and resumes
from the first one that failed or changed: a model deleted (or retrained by hand) reruns the step that
last wrote it and every step after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cemlib.core.devices import use_threads
from cemlib.core.environment import ENVIRONMENT_FILE, describe_environment
from cemlib.core.fileio import atomic_write_text
from cemlib.core.resources import WORKDIR_ENV, notebooks_dir, profiles_dir
from cemlib.core.settings import Settings, describe_variant, did_you_mean, load_profile, profile_path
from cemlib.results import report as report_files
from cemlib.study import prepare
from cemlib.study.steps import write_index
from cemlib.training import tracking

STEPS = (
    "00_cohort",
    "01_preprocessing",
    "02_training",
    "03_ablations",
    "04_external_validation",
    "05_cams",
)
STATE_FILE = "pipeline_state.json"
#: Key of the state file holding the files each step wrote into figures/ and tables/.
OUTPUTS_KEY = "outputs"
#: Key of the state file holding the data and model files each step wrote, with a digest of their stats.
ARTIFACTS_KEY = "artifacts"
#: The kernel papermill runs the notebooks on: the running interpreter's own (ipykernel's native kernel,
#: python3), so `cem reproduce` needs no installed kernelspec and runs them where cemlib itself runs. The
#: notebooks' metadata name the `cemlib` kernel that `make lab` installs into the venv for JupyterLab.
KERNEL_NAME = "python3"
NOTEBOOK_KERNEL = "cemlib"


#: The steps that read the external validation sets (the others read the internal cohort only).
READS_EXTERNAL = ("01_preprocessing", "03_ablations", "04_external_validation", "05_cams")


class StepFailed(RuntimeError):
    """A notebook failed; the message names the executed notebook to open."""


class MissingData(ValueError):
    """A dataset the profile expects to find on disk is not there; the message names the setting and path."""


def short_name(step: str) -> str:
    """'02_training' -> 'training'."""
    return step.split("_", 1)[1]


def steps_help() -> str:
    """'0 cohort, 1 preprocessing, 2 training, ...': how steps can be named."""
    return ", ".join(f"{int(step[:2])} {short_name(step)}" for step in STEPS)


def _match_step(text: str) -> list[str]:
    """The steps one word names: a number (2, 02), a range (2-4), a full or short name or its unique start."""
    if re.fullmatch(r"\d+", text) and int(text) < len(STEPS):
        return [STEPS[int(text)]]
    span = re.fullmatch(r"(\d+)-(\d+)", text)
    if span and int(span[1]) <= int(span[2]) < len(STEPS):
        return list(STEPS[int(span[1]):int(span[2]) + 1])
    word = text.lower().replace("-", "_")
    exact = [s for s in STEPS if word in (s, short_name(s))]
    started = [s for s in STEPS if short_name(s).startswith(word) or s.startswith(word)]
    if exact or len(started) == 1:
        return exact or started
    names = [short_name(s) for s in STEPS] + list(STEPS)
    raise ValueError(f"unknown step '{text}'{did_you_mean(word, names)} (steps: {steps_help()}; "
                     "by number, name or full notebook name)")


def resolve_steps(words: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The steps named by `words` ('2,3', '02', 'training', '2-4', '02_training'), in pipeline order."""
    wanted = {step for word in words for part in str(word).split(",") if part.strip()
              for step in _match_step(part.strip())}
    if not wanted:
        raise ValueError(f"no step named (steps: {steps_help()})")
    return tuple(step for step in STEPS if step in wanted)


def check_data_roots(profile: Settings, steps: tuple[str, ...] = STEPS) -> None:
    """MissingData, in one line naming the setting and the path, when a dataset the profile expects to find
    (a real dataset, not a synthetic one written when missing) has no folder; before any kernel starts.

    The internal cohort is checked for every run, the external sets when a step that reads them runs.
    """
    names = [prepare.INTERNAL] + ([*profile.external] if set(steps) & set(READS_EXTERNAL) else [])
    problems = []
    for name in names:
        label = (f"internal dataset (data.dataset: {profile.data.dataset})" if name == prepare.INTERNAL
                 else f"{prepare.DATASET_NAMES.get(name, name)} dataset")
        key = "data.root" if name == prepare.INTERNAL else f"external.{name}.root"
        synthetic = (profile.data.dataset == "synthetic" if name == prepare.INTERNAL
                     else profile.external[name].synth is not None)
        try:
            plan = prepare.plan_dataset(profile, name)
        except ValueError as exc:
            if not synthetic:
                problems.append(f"{exc} (the {label} is read from it)")
            continue
        if plan.synth is None and not plan.root.is_dir():
            what = "is a file, not a folder" if plan.root.exists() else "not found"
            problems.append(f"{key} {plan.root} {what} (profile {profile.name!r} reads an existing {label} "
                            f"there; set {key} to its folder)")
    if problems:
        raise MissingData("; ".join(problems))


@dataclass(frozen=True)
class StepResult:
    """What happened to one notebook in a pipeline run."""

    name: str
    status: str  # "ran" | "skipped"
    seconds: float
    output: Path


def source_digest() -> str:
    """Hash of every cemlib source file, so a code change invalidates finished steps."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]  # cemlib/
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def step_fingerprint(notebook: Path, parameters: dict[str, Any], previous: str, code: str) -> str:
    """Fingerprint of a step's inputs: notebook bytes, parameters, the previous step and the code."""
    digest = hashlib.sha256()
    digest.update(notebook.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True).encode())
    digest.update(previous.encode())
    digest.update(code.encode())
    return digest.hexdigest()


def executed_dir(profile: Settings) -> Path:
    """Folder holding the executed notebooks of a profile's run."""
    return Path(profile.reports) / "executed"


@contextlib.contextmanager
def kernel_workdir(folder: str) -> Iterator[None]:
    """CEM_WORKDIR set to `folder` while notebooks run (their kernels inherit it), then put back."""
    previous = os.environ.get(WORKDIR_ENV)
    os.environ[WORKDIR_ENV] = folder
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(WORKDIR_ENV, None)
        else:
            os.environ[WORKDIR_ENV] = previous


def _load_state(path: Path) -> dict[str, Any]:
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def notebook_profile(profile_name: str | Path, notebook_dir: Path | None = None) -> str:
    """The profile as the notebooks' parameter: a profile name, or a path relative to the notebooks.

    No absolute path of the machine is injected into the executed notebooks (a YAML outside the project
    is the exception: it has no shorter name).
    """
    path = profile_path(profile_name).resolve()
    if path.parent == profiles_dir().resolve():
        return path.stem
    notebooks = Path(notebook_dir if notebook_dir is not None else notebooks_dir()).resolve()
    if not path.is_relative_to(notebooks.parent):
        return path.as_posix()
    return Path(os.path.relpath(path, notebooks)).as_posix()


def artifact_roots(profile: Settings) -> list[Path]:
    """Folders whose files a step makes and later steps use: synthetic data, manifests, caches, models.

    A real dataset's folder is only read, so it is not walked; a folder inside another is walked once.
    """
    candidates = [profile.runs, profile.preprocess.cache]
    for name in (prepare.INTERNAL, *profile.external):
        try:
            plan = prepare.plan_dataset(profile, name)
        except ValueError:  # a dataset the profile does not locate: nothing of it to track
            continue
        candidates += [plan.manifest_dir, plan.root if plan.synth is not None else None]
    roots = sorted({Path(c).resolve() for c in candidates if c})
    nested = {root for root in roots for other in roots if other != root and root.is_relative_to(other)}
    return [root for root in roots if root not in nested]


def artifact_files(roots: list[Path], skip: list[Path]) -> dict[str, tuple[int, int]]:
    """Every file under the roots but those under `skip`: path -> (size, modification time ns)."""
    found: dict[str, tuple[int, int]] = {}
    for root in roots:
        for folder, subfolders, files in os.walk(root):
            here = Path(folder)
            if any(here.is_relative_to(s) for s in skip):
                subfolders.clear()
                continue
            for file_name in files:
                path = here / file_name
                if path in skip:
                    continue
                with contextlib.suppress(FileNotFoundError):  # a worker may remove a temporary meanwhile
                    stat = path.stat()
                    found[path.as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def _stats_digest(files: dict[str, tuple[int, int]]) -> str:
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()


def artifacts_intact(record: dict[str, Any] | None) -> bool:
    """Whether the files a step wrote are all still there, as it left them."""
    if record is None:  # not recorded: nothing vouches for them
        return False
    now = {}
    for name in record["files"]:
        try:
            stat = Path(name).stat()
        except FileNotFoundError:
            return False
        now[name] = (stat.st_size, stat.st_mtime_ns)
    return _stats_digest(now) == record["digest"]


def _record_artifacts(state: dict[str, Any], name: str, before: dict[str, tuple[int, int]],
                      after: dict[str, tuple[int, int]]) -> None:
    """The files each step last wrote: this step's new writes join those it wrote before and still has.

    A file written or removed now no longer belongs to another step, so deleting it reruns this one.
    """
    written = {path: stat for path, stat in after.items() if before.get(path) != stat}
    removed = set(before) - set(after)
    records = state.setdefault(ARTIFACTS_KEY, {})
    for other, record in records.items():
        if other != name and (set(record["files"]) & (set(written) | removed)):
            kept = {p: after[p] for p in record["files"] if p not in written and p in after}
            records[other] = {"files": sorted(kept), "digest": _stats_digest(kept)}
    earlier = records.get(name, {}).get("files", [])
    mine = {p: after[p] for p in earlier if p in after and p not in written} | written
    records[name] = {"files": sorted(mine), "digest": _stats_digest(mine)}


#: Kernel socket folders in the temporary folder: cem-kernel-<pid of the run>-<random>.
SOCKET_PREFIX = "cem-kernel-"


def remove_orphan_socket_dirs(folder: str | os.PathLike | None = None) -> list[Path]:
    """Delete the kernel socket folders of runs that are gone (a kill -9 skips the cleanup); return them."""
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{SOCKET_PREFIX}*-*"):
        pid = path.name[len(SOCKET_PREFIX):].split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def ipc_kernel_manager() -> Iterator[type]:
    """A kernel manager class talking to the kernel over local sockets (not unencrypted TCP ports).

    The sockets live in a private temporary folder (not the working folder, which may be read-only),
    removed when the block ends; folders a killed run left behind are removed first.
    """
    from jupyter_client.manager import AsyncKernelManager

    remove_orphan_socket_dirs()
    socket_dir = tempfile.mkdtemp(prefix=f"{SOCKET_PREFIX}{os.getpid()}-")

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", os.path.join(socket_dir, "k"))
            super().__init__(**kwargs)

    try:
        yield IPCKernelManager
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


def _tidy(output: Path, profile: Settings) -> None:
    """Executed notebook without stderr (kept in NAME.stderr.txt) or the machine's paths in its metadata."""
    if output.exists():
        report_files.clean_executed(output, Path(profile.root))


def _remove_stale_outputs(reports: Path, outputs: dict[str, list[str]]) -> None:
    """Delete figures and tables that no step of the current run wrote (left by an earlier run)."""

    if any(name not in outputs for name in STEPS):
        print("report: some steps ran before outputs were recorded; figures/ and tables/ not tidied "
              "(run with --force to rebuild them all)", flush=True)
        return
    for name in report_files.remove_stale(reports, {f for files in outputs.values() for f in files}):
        print(f"report: removed {name} (not made by this run)", flush=True)


def run_pipeline(
    profile_name: str | Path = "smoke",
    steps: tuple[str, ...] = STEPS,
    force: bool = False,
    kernel_name: str | None = KERNEL_NAME,
    report: bool = True,
    overrides: dict[str, Any] | None = None,
    notebook_dir: Path | None = None,
    workdir: str | Path | None = None,
) -> list[StepResult]:
    """Execute the notebooks in order; skip unchanged finished steps; stop at the first failure.

    Data, runs and reports go under the work folder (see cemlib.core.resources.work_root); the notebooks'
    kernels are told it through the CEM_WORKDIR environment variable.
    """
    import papermill

    notebook_dir = Path(notebook_dir) if notebook_dir is not None else notebooks_dir()
    profile = load_profile(profile_name, overrides, workdir)
    if (variant := describe_variant(profile)) is not None:
        print(variant, flush=True)
    check_data_roots(profile, tuple(steps))
    reports = Path(profile.reports)
    out_dir = executed_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = Path(profile.runs) / STATE_FILE
    state = {} if force else _load_state(state_path)
    parameters = {"profile": notebook_profile(profile_name, notebook_dir), "overrides": overrides or {}}
    # The profile's settings (not only its path) are an input of every step.
    code = source_digest() + json.dumps(profile.as_dict(), sort_keys=True, default=str)
    previous = ""
    results: list[StepResult] = []
    roots = artifact_roots(profile)
    skip = [state_path.resolve(), reports.resolve(), out_dir.resolve()]
    rerun_rest = False  # once a step runs, every later step runs: its inputs may have changed
    artifacts = None  # the files after the last step that ran: the next step's starting point
    for index, name in enumerate(steps, start=1):
        notebook = Path(notebook_dir) / f"{name}.ipynb"
        if not notebook.exists():
            raise FileNotFoundError(f"notebook not found: {notebook}")
        output = out_dir / f"{name}.ipynb"
        fingerprint = step_fingerprint(notebook, parameters, previous, code)
        previous = fingerprint
        unchanged = state.get(name) == fingerprint
        intact = unchanged and artifacts_intact(state.get(ARTIFACTS_KEY, {}).get(name))
        if not rerun_rest and unchanged and output.exists() and intact:
            print(f"[{index}/{len(steps)}] {name}: unchanged, skipped", flush=True)
            results.append(StepResult(name, "skipped", 0.0, output))
            continue
        if unchanged and ARTIFACTS_KEY in state and not intact:
            print(f"[{index}/{len(steps)}] {name}: files it wrote were changed or removed since", flush=True)
        rerun_rest = True
        # Unfinished until it ends well: a kill now leaves this step and those after it off the record.
        for later in steps[index - 1:]:
            state.pop(later, None)
        atomic_write_text(state_path, json.dumps(state, indent=2))
        print(f"[{index}/{len(steps)}] {name}: running", flush=True)
        started = time.perf_counter()
        before = report_files.output_files(reports)
        artifacts_before = artifacts if artifacts is not None else artifact_files(roots, skip)
        try:
            # Progress reaches the terminal through a side channel; the notebook keeps only results.
            progress = tracking.follow(out_dir / "progress.log", prefix="      ")
            with kernel_workdir(str(profile.root)), progress, ipc_kernel_manager() as kernel_manager:
                papermill.execute_notebook(
                    str(notebook),
                    str(output),
                    parameters=parameters,
                    kernel_name=kernel_name,
                    cwd=str(notebook_dir),
                    progress_bar=False,
                    kernel_manager_class=kernel_manager,
                )
        except Exception as exc:  # papermill raises PapermillExecutionError and kernel errors
            _tidy(output, profile)
            state.pop(name, None)
            atomic_write_text(state_path, json.dumps(state, indent=2))
            raise StepFailed(
                f"step {name} failed: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[-1]}\n"
                f"open the executed notebook to see where: {output}"
            ) from exc
        seconds = time.perf_counter() - started
        _tidy(output, profile)
        state[name] = fingerprint
        written = report_files.written_between(before, report_files.output_files(reports))
        state.setdefault(OUTPUTS_KEY, {})[name] = written
        artifacts = artifact_files(roots, skip)
        _record_artifacts(state, name, artifacts_before, artifacts)
        atomic_write_text(state_path, json.dumps(state, indent=2))
        print(f"[{index}/{len(steps)}] {name}: done in {seconds:.0f} s", flush=True)
        results.append(StepResult(name, "ran", seconds, output))
    if report and tuple(steps) == STEPS:
        _remove_stale_outputs(reports, state.get(OUTPUTS_KEY, {}))
        paths = {"environment": write_environment(profile)}
        paths.update(export_report(profile))
        paths["index"] = write_index(profile, sum(r.seconds for r in results))
        for path in paths.values():
            print(f"report: {path}", flush=True)
    return results


def write_environment(profile: Settings) -> Path:
    """reports/<profile>/environment.json: Python, packages, CPU, kernel settings and torch of this run."""
    use_threads(profile.threads)  # as the notebooks' kernels ran
    path = Path(profile.reports) / ENVIRONMENT_FILE
    atomic_write_text(path, json.dumps(describe_environment(), indent=2) + "\n")
    return path


def unfinished_step(profile: Settings, steps: tuple[str, ...] = STEPS) -> str | None:
    """The first step whose notebook did not finish (never ran, failed or was killed), or None."""
    state = _load_state(Path(profile.runs) / STATE_FILE)
    for name in steps:
        if name not in state or not (executed_dir(profile) / f"{name}.ipynb").is_file():
            return name
    return None


def export_finished_report(profile: Settings, steps: tuple[str, ...] = STEPS) -> dict[str, Path]:
    """export_report, when every step's notebook finished; a ValueError naming the step to rerun if not."""
    name = unfinished_step(profile, steps)
    if name is not None:
        raise ValueError(f"step {name} did not finish (never ran, failed or was interrupted), so the report "
                         f"would miss its tables and figures; run `cem reproduce` (it resumes at {name}) "
                         "before --report-only")
    return export_report(profile)


def export_report(profile: Settings) -> dict[str, Path]:
    """Write the study report as HTML and PDF (title page, contents, code hidden) into reports/."""
    executed = [executed_dir(profile) / f"{name}.ipynb" for name in STEPS]
    return report_files.export_report(profile, [path for path in executed if path.exists()])


def html_to_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Render an HTML file to PDF with WeasyPrint (needs no browser and no LaTeX)."""
    return report_files.html_to_pdf(html_path, pdf_path)
