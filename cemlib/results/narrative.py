"""The report's sentences, written from a run's own numbers (cemlib.results.runfacts.RunFacts).

Every sentence that depends on a result is generated here from the run's tables, so it is true of the run
that made the report, whatever it found: the one-page summary (what was run, on what data, the headline
results with their CIs, the verdicts on the paper's claims, `cem check`'s verdict, the replicates), the
methods paragraph of each section (CI method, threshold and how it was chosen, unit of analysis, model
selection, epochs run), the limitations, and the numbered caption of each figure.

Functions return plain text (or lists of it); cemlib.results.report escapes and places it.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from cemlib.core.vocab import (
    DATASET_LABELS,
    PAPER_INPUT_SIZE,
    dataset_key,
    dataset_name,
    model_label,
    model_name,
)
from cemlib.results import faithfulness, history
from cemlib.results.claims import HOLDS, INCONCLUSIVE, load_reference
from cemlib.results.runfacts import (
    EXTERNAL_MODELS,
    MAIN_MODEL,
    WEAK_AUC,
    ModelFinding,
    RunFacts,
    flat_training,
    folder_label,
    model_findings,
    scorecard_claims,
    stage_curves,
    weak_holds,
)
from cemlib.results.tables import format_ci

CI_METHODS = {"clopper-pearson": "exact (Clopper-Pearson)", "wilson": "Wilson score"}


def dataset_text(run: RunFacts, key: str) -> str:
    """A dataset as the report names it: 'internal test set', 'synthetic replica of CDD-CESM'."""
    return dataset_name(key, run.replicas.get(key, run.synthetic))


def _ci(row: pd.Series | None, digits: int = 2) -> str:
    if row is None:
        return "n/a"
    return format_ci(float(row["estimate"]), float(row["low"]), float(row["high"]), digits)


def _ci_words(row: pd.Series | None) -> str:
    """'0.64 (95% CI 0.56 to 0.73)'."""
    if row is None or math.isnan(float(row["estimate"])):
        return "n/a"
    return f"{float(row['estimate']):.2f} (95% CI {float(row['low']):.2f} to {float(row['high']):.2f})"


def _names(models: list[str]) -> str:
    labels = [model_label(m) for m in models]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def paper_values() -> dict[tuple[str, str, str], float]:
    """(dataset key, model, metric) -> the paper's published value (empty when the table is absent)."""
    try:
        reference = load_reference()
    except FileNotFoundError:
        return {}
    values = {}
    for row in reference.itertuples(index=False):
        if not math.isnan(row.value):
            key = dataset_key(row.dataset) or str(row.dataset)
            values[(key, row.model, row.metric)] = float(row.value)
    return values


def _cohort_counts(run: RunFacts) -> dict[str, str]:
    """Patients per split from Table 2's total row ({'Training': '315', ...}); empty without it."""
    if run.cohort is None or run.cohort.empty:
        return {}
    total = run.cohort[run.cohort.iloc[:, 0].astype(str).str.lower() == "total"]
    return {} if total.empty else {str(k): str(v) for k, v in total.iloc[0].items()}


def _model_scale(run: RunFacts) -> str:
    facts = run.settings
    width, (height, cols) = facts.get("width", 1.0), facts.get("size", PAPER_INPUT_SIZE)
    trunk = "VGG16-BN" if width == 1 else f"VGG16-BN at {width:g} of its channel width"
    return f"{trunk} on {height} × {cols}-pixel views"


def _epochs_planned(run: RunFacts) -> str:
    s1, s2 = run.settings.get("stage1_epochs"), run.settings.get("stage2_epochs")
    return f"up to {s1} + {s2} epochs (stage 1 + stage 2)" if s1 and s2 else "the profile's epochs"


def epochs_run(run: RunFacts, folder: str | None = None) -> str:
    """'stage 1 ran 8 of 8 epochs (kept epoch 8), stage 2 ran 5 of 5 (kept epoch 3)' for a model's run
    folder (default: the main model's), from the training logs; '' when the logs are not at hand."""
    curves = stage_curves(run.training)
    if not curves:
        return ""
    folder = folder or MAIN_MODEL.lower().replace(" ", "_")
    inputs = folder.split("_")[0]
    wanted = [c for c in curves if c.model == folder and c.stage == "stage2"]
    wanted = [c for c in curves if c.model in (f"{inputs}_stage1", folder) and c.stage == "stage1"] + wanted
    planned = {"stage1": run.settings.get("stage1_epochs"), "stage2": run.settings.get("stage2_epochs")}
    parts = []
    for curve in wanted:
        of = f" of {planned[curve.stage]}" if planned.get(curve.stage) else ""
        parts.append(f"{curve.stage.replace('stage', 'stage ')} ran {curve.epochs}{of} epochs "
                     f"(kept epoch {curve.best_epoch}, validation AUC {curve.best_val_auc:.2f})")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------------
# the summary


def one_class_sentence(run: RunFacts, findings: list[ModelFinding]) -> str:
    """Why a model reads SEN 0.00 / SPE 1.00 (or the converse) at the fixed threshold, when any does."""
    benign = [f.model for f in findings if f.one_class == "benign"]
    malignant = [f.model for f in findings if f.one_class == "malignant"]
    sentences = []
    threshold = f"{run.threshold:g}"
    if benign:
        sentences.append(
            f"At the fixed threshold {threshold}, {_names(benign)} {'calls' if len(benign) == 1 else 'call'} "
            f"every breast benign (SEN 0.00, SPE 1.00): all {'its' if len(benign) == 1 else 'their'} "
            f"scores lie below {threshold}, where a model that has learnt little from the images puts them "
            "(near the share of malignant breasts it was trained on), so SEN and SPE measure the threshold "
            "rather than the images, ACC equals the share of benign breasts and PPV has no positive call "
            "to rest on (n/a).")
    if malignant:
        sentences.append(
            f"At the fixed threshold {threshold}, {_names(malignant)} "
            f"{'calls' if len(malignant) == 1 else 'call'} every breast malignant (SEN 1.00, SPE 0.00): "
            f"all scores lie at or above {threshold}, so SEN and SPE measure the threshold, not the images.")
    return " ".join(sentences)


def chance_sentence(findings: list[ModelFinding], where: str) -> str:
    at_chance = [f.model for f in findings if f.at_chance]
    if not findings:
        return ""
    if not at_chance:
        lowest = min(findings, key=lambda f: f.low)
        return (f"Every model's AUC on the {where} excludes chance (0.5); the lowest lower bound is "
                f"{lowest.low:.2f} ({model_label(lowest.model)}).")
    if len(at_chance) == len(findings):
        return (f"No model's AUC on the {where} excludes chance: every 95% CI takes in 0.5, so this run "
                "cannot tell any of them from a model that ignores the images.")
    return (f"{_count(len(at_chance), 'model')} of {len(findings)} cannot be told from chance on the {where} "
            f"(AUC 95% CI takes in 0.5): {_names(at_chance)}.")


def headline_results(run: RunFacts) -> list[str]:
    """The headline numbers with their CIs: the main models on the internal test set and each external set."""
    paper = paper_values()
    lines = []
    for model in (MAIN_MODEL, model_name("mf_concat", "le")):
        auc = run.metric(model, "auc")
        if auc is None:
            continue
        published = paper.get(("internal", model, "auc"))
        sen, spe = run.metric(model, "sen"), run.metric(model, "spe")
        lines.append(f"{model_label(model)}, internal test set: AUC {_ci_words(auc)}"
                     + (f" (paper {published:.2f})" if published is not None else "")
                     + f"; at threshold {run.threshold:g} SEN {_ci(sen)}, SPE {_ci(spe)}.")
    findings = model_findings(run)
    if findings:
        best = max(findings, key=lambda f: f.auc)
        lines.append(f"Highest internal AUC: {model_label(best.model)}, "
                     f"{format_ci(best.auc, best.low, best.high)}.")
    for key in run.external_sets():
        model = EXTERNAL_MODELS.get(key)
        auc = run.metric(model, "auc", key) if model else None
        if auc is None:
            continue
        published = paper.get((key, model, "auc"))
        lines.append(f"{model_label(model)}, {dataset_text(run, key)} ({int(auc['n_breasts'])} breasts, "
                     f"{int(auc['n_malignant'])} malignant): AUC {_ci_words(auc)}"
                     + (f" (paper, on the real {DATASET_LABELS[key]}: {published:.2f})"
                        if published is not None else "") + ".")
    return lines


def verdict_sentences(run: RunFacts) -> list[str]:
    """The claims' verdicts counted, those that hold named, holds between weak models commented."""
    notes = scorecard_claims(run)
    if not notes:
        return ["The paper's claims were not scored in this run (no scorecard)."]
    assessed = [n for n in notes if n.verdict in (HOLDS, "contradicted", INCONCLUSIVE)]
    counts = {v: sum(n.verdict == v for n in assessed) for v in (HOLDS, "contradicted", INCONCLUSIVE)}
    text = [f"Of the paper's {len(notes)} claims about pairs of models, {counts[HOLDS]} "
            f"{'holds' if counts[HOLDS] == 1 else 'hold'}, {counts['contradicted']} "
            f"{'is' if counts['contradicted'] == 1 else 'are'} contradicted and {counts[INCONCLUSIVE]} "
            f"{'is' if counts[INCONCLUSIVE] == 1 else 'are'} inconclusive on this run's test set "
            "(paired DeLong tests; a higher point estimate alone never holds)."]
    holding = [n for n in notes if n.verdict == HOLDS]
    if holding:
        detail = len(holding) <= 3  # the numbers of a few; the names alone of many, to keep one page
        text.append("Holds: " + "; ".join(f"{n.claim} ({n.shown})" if detail else n.claim
                                          for n in holding) + ".")
    weak = weak_holds(run)
    if len(weak) == 1:
        note = weak[0]
        text.append(f"The verdict \"holds\" on \"{note.claim}\" rests on two weak models (AUC "
                    f"{note.first_auc:.2f} and {note.second_auc:.2f}, against at least 0.90 in the paper): a "
                    "small difference between models that both discriminate poorly says little about the "
                    "fusions the paper compared.")
    elif weak:
        text.append(f"{len(weak)} of the claims that hold rest on weak models (both AUCs below "
                    f"{WEAK_AUC:.2f}, against at least 0.90 in the paper): "
                    + "; ".join(f"{n.claim} (AUC {n.first_auc:.2f} and {n.second_auc:.2f})" for n in weak)
                    + ". A difference between models that both discriminate poorly says little about the "
                      "fusions the paper compared.")
    return text


def check_verdict(run: RunFacts) -> str:
    """`cem check`'s verdict on this run in a few words: 'passed ...', 'failed ...' or 'not made ...'."""
    if run.check is None:
        return (f"not made: the kit holds no reference for the {run.profile} profile (make one with "
                "`cem reproduce --replicates 5`, then `cem check --make-reference`)")
    outcome = "passed" if run.check.passed else "failed"
    return f"{outcome} against {_short_path(run.check.reference)}: {run.check.line}"


def check_sentence(run: RunFacts) -> str:
    """`cem check`'s verdict on this run, and what an uninformative band means for it."""
    text = f"`cem check` {check_verdict(run)}."
    if run.check is not None and run.check.comparison is not None:
        table = run.check.comparison
        headline = table[table["headline"]]
        told = int(headline["informative"].sum())
        if told < len(headline):
            text += (f" {len(headline) - told} of the {len(headline)} headline bands admit a model at "
                     "chance, "
                     "so those metrics are neither passed nor failed (see Limitations).")
    return text


def _short_path(path: str) -> str:
    parts = str(path).replace("\\", "/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 1 else str(path)


def replicate_sentence(run: RunFacts) -> str:
    """How many replicates the run holds and what their spread says (or that it is unknown)."""
    if run.replicate_count < 2 or run.replicates is None:
        return (f"One replicate (training seed {run.seeds[0] if run.seeds else 0}): every model was trained "
                "once, so how far its numbers move with the training seed is not measured in this run.")
    rows = run.replicates[run.replicates["metric"] == "internal auc"]
    main = rows[rows["model"] == MAIN_MODEL]
    text = f"{run.replicate_count} replicates (training seeds {', '.join(str(s) for s in run.seeds)})"
    if not main.empty:
        r = main.iloc[0]
        text += (f": the internal AUC of {model_label(MAIN_MODEL)} ranges {r['min']:.2f} to {r['max']:.2f} "
                 f"(mean {r['mean']:.2f}, SD {r['sd']:.3f})")
    if not rows.empty:
        widest = rows.loc[rows["sd"].idxmax()]
        text += f"; the widest spread is {model_label(widest['model'])}'s (SD {widest['sd']:.3f})"
    return text + "."


def replicates_explained(run: RunFacts) -> str:
    """What replicates are, how many this run has, and how to run more."""
    text = ("A replicate is the whole set of models trained again under another training seed, with the "
            "cohort, split and tensor cache unchanged: the spread of a metric across replicates is how far "
            "it moves with the seed alone, the yardstick for any difference between models. ")
    if run.replicate_count < 2:
        return text + (f"This run has one replicate (training seed {run.seeds[0] if run.seeds else 0}), so "
                       f"that spread is not measured here. To measure it, run `cem reproduce --profile "
                       f"{run.profile or '<profile>'} --replicates 5` (or set `replicates: 5` in the "
                       "profile): replicates 1 to 4 train under seeds base + 1 to base + 4 in "
                       "runs/<profile>/replicates/, and this section then shows each metric's mean, SD and "
                       "range; `cem check --make-reference` turns such a run into a reference for `cem "
                       "check`.")
    return text + replicate_sentence(run)


def clustering_sentence(table: pd.DataFrame) -> str:
    """Where the clustered (Obuchowski) CI is wider than the per-breast DeLong CI (the clustering table)."""
    column = "Clustered CI wider"
    if table.empty or column not in table or not table[column].isin(["yes", "no"]).any():
        return "No model had both classes to estimate a clustered CI."
    wider = table[table[column] == "yes"]
    where = "Dataset" in table
    names = ", ".join(f"{r['Model']}" + (f" ({r['Dataset']})" if where else "") for _, r in wider.iterrows())
    total = int(table[column].isin(["yes", "no"]).sum())
    return (f"The clustered (Obuchowski) CI is wider than the per-breast DeLong CI for {len(wider)} of "
            f"{total} models" + (f": {names}." if names else "."))


def what_was_run(run: RunFacts) -> str:
    ran = epochs_run(run)
    return (f"Profile {run.profile}: the paper's eight networks (LE and CEM inputs, each with no fusion, "
            f"left-right fusion, MF fusion (average) and MF fusion (concatenation)), each a "
            f"{_model_scale(run)} (the paper: VGG16-BN on {PAPER_INPUT_SIZE[0]} × {PAPER_INPUT_SIZE[1]}), "
            f"trained for {_epochs_planned(run)} with the kept epoch chosen by the lowest validation loss"
            + (f"; {model_label(MAIN_MODEL)}: {ran}" if ran else "") + ".")


def data_sentence(run: RunFacts) -> str:
    counts = _cohort_counts(run)
    auc = run.metric(MAIN_MODEL, "auc")
    if auc is None:
        auc = run.metrics[run.metrics["dataset"] == "internal"].iloc[0]
    source = ("the kit's synthetic CEM cohort (a phantom, not patients)" if run.synthetic
              else "the profile's internal cohort")
    text = f"Internal data: {source}"
    if counts:
        text += (f", {counts.get('Overall', '?')} patients split at patient level into "
                 f"{counts.get('Training', '?')} training, {counts.get('Validation', '?')} validation and "
                 f"{counts.get('Test', '?')} test patients")
    text += (f"; the internal test set holds {int(auc['n_breasts'])} breasts, {int(auc['n_malignant'])} "
             "of them malignant.")
    externals = []
    for key in run.external_sets():
        row = run.metric(EXTERNAL_MODELS.get(key, ""), "auc", key)
        if row is None:
            continue
        externals.append(f"the {dataset_text(run, key)} ({int(row['n_breasts'])} breasts, "
                         f"{int(row['n_malignant'])} malignant; scored with {model_label(row['model'])})")
    if externals:
        text += " External validation: " + " and ".join(externals) + "."
    if any(run.replicas.get(k) for k in run.external_sets()):
        text += (" The external sets are written by the kit in the on-disk formats of the public releases, "
                 "from the same phantom: they test the readers and the pipeline, not generalisation to "
                 "other hospitals.")
    return text


def summary(run: RunFacts) -> list[tuple[str, list[str]]]:
    """The one-page summary: (heading, paragraphs or bullet lines) blocks, all from the run's numbers."""
    findings = model_findings(run)
    calls = [one_class_sentence(run, findings), chance_sentence(findings, "internal test set")]
    return [
        ("What was run", [what_was_run(run)]),
        ("Data", [data_sentence(run)]),
        ("Headline results (95% CIs)", headline_results(run)),
        ("Models at chance and at the threshold", [s for s in calls if s]),
        ("The paper's claims", verdict_sentences(run)),
        ("Where the main model looks", faithfulness.looks_sentences(run)),
        ("Check against the reference", [check_sentence(run), history.earlier_sentence(run)]),
        ("Replicates", [replicate_sentence(run)]),
    ]


# ---------------------------------------------------------------------------------------------------
# limitations


def limitations(run: RunFacts) -> list[str]:
    """What limits this run's results, each point generated from the run."""
    points = []
    replicas = [dataset_text(run, k) for k in run.external_sets() if run.replicas.get(k)]
    if run.synthetic or replicas:
        points.append(
            "The data are synthetic. " + ("The internal cohort is the kit's phantom" if run.synthetic else "")
            + (("; the external sets are the " if run.synthetic else "The external sets are the ")
               + " and the ".join(replicas) if replicas else "")
            + ". No number here measures performance on patients, and agreement or disagreement with the "
              "paper says how the method behaves on the phantom, not in a clinic.")
    width, size = run.settings.get("width", 1.0), tuple(run.settings.get("size", PAPER_INPUT_SIZE))
    if width < 1 or size != PAPER_INPUT_SIZE:
        points.append(f"The networks are smaller than the paper's: a {_model_scale(run)} and "
                      f"{_epochs_planned(run)}, against the full VGG16-BN on {PAPER_INPUT_SIZE[0]} × "
                      f"{PAPER_INPUT_SIZE[1]}; lower AUCs than the paper's are expected at this scale.")
    points.append(_replicate_limitation(run))
    findings = model_findings(run)
    one_class = one_class_sentence(run, findings)
    if one_class:
        points.append(one_class)
    at_chance = [f.model for f in findings if f.at_chance]
    if at_chance:
        points.append(f"{_names(at_chance)}: AUC 95% CI takes in 0.5, so "
                      f"{'its' if len(at_chance) == 1 else 'their'} comparisons with other models test "
                      "differences from chance rather than between fusions.")
    flat = flat_training(run)
    if flat:
        names = ", ".join(f"{folder_label(c.model)} {c.stage.replace('stage', 'stage ')} (validation AUC "
                          f"{c.auc_range[0]:.2f}-{c.auc_range[1]:.2f} over {_count(c.epochs, 'epoch')})"
                          for c in flat)
        points.append(f"Flat learning curves: {names}. These stages learnt next to nothing; the models "
                      "built on them score near chance.")
    elif run.training is None:
        points.append("The per-epoch training logs were not found beside this report, so whether a "
                      "learning curve stayed flat is not stated here (see the figure of notebook 02).")
    ceiling = ceiling_sentence(run)
    if ceiling:
        points.append(ceiling)
    for note in weak_holds(run):
        points.append(f"\"{note.claim}\" holds between two weak models (AUC {note.first_auc:.2f} and "
                      f"{note.second_auc:.2f}, both below {WEAK_AUC:.2f}); the verdict says little about "
                      "the paper's models.")
    points += _check_limitations(run)
    for key in run.external_sets():
        auc = run.metric(EXTERNAL_MODELS.get(key, ""), "auc", key)
        if auc is not None and int(auc["n_malignant"]) < 20:
            points.append(f"The {dataset_text(run, key)} holds {int(auc['n_malignant'])} malignant breasts: "
                          f"its AUC CI is {float(auc['high']) - float(auc['low']):.2f} wide and its "
                          "sensitivity rests on a handful of cases.")
    points.append(f"SEN, SPE, PPV, NPV and ACC use the paper's fixed threshold {run.threshold:g}, not one "
                  "tuned on this run; the operating-point tables show thresholds fixed on the validation "
                  "split.")
    return [p for p in points if p]


#: Per-breast AUC that reading real CEM reaches (the paper's model and published reader studies).
REAL_CEM_AUC = (0.90, 0.96)


def ceiling_sentence(run: RunFacts) -> str:
    """The image-attainable ceiling beside the best CEM model, and what it says about the data ('' without
    the ceiling table)."""
    table = run.ceiling
    if table is None or table.empty:
        return ""
    at_input = table[table["resolution"].str.startswith("network input")]
    rows = {r.inputs: r for r in (at_input if not at_input.empty else table).itertuples()}
    if "CEM" not in rows:
        return ""
    cem, le = rows["CEM"], rows.get("LE")
    aucs = run.internal_aucs("CEM")
    best = max(aucs, key=aucs.get) if aucs else None
    le_text = f" and {le.auc:.2f} ({le.ci_low:.2f}-{le.ci_high:.2f}) from LE alone" if le is not None else ""
    text = (f"A reader told where every finding is, measuring contrast and area, reaches a per-breast AUC of "
            f"{cem.auc:.2f} ({cem.ci_low:.2f}-{cem.ci_high:.2f}) from LE and DES{le_text} at the network's "
            "input size on the internal test set")
    if best is not None:
        place = "below" if aucs[best] < cem.ci_low else ("above" if aucs[best] > cem.ci_high else "within")
        text += (f"; the best CEM model, {model_label(best)}, reaches {aucs[best]:.2f}, {place} that "
                 "reader's CI")
    text += "."
    if cem.ci_high < REAL_CEM_AUC[0]:
        low, high = REAL_CEM_AUC
        text += (f" Reading real CEM reaches {low:.2f}-{high:.2f}, far above what this "
                 "reader attains here (a lower bound on what the images allow): these images are harder than "
                 "real exams, so this run's AUCs cannot be set against the paper's.")
    return text


def _replicate_limitation(run: RunFacts) -> str:
    if run.replicate_count < 2 or run.replicates is None:
        return ("One replicate: each model was trained under one training seed, and differences between "
                "models can be of the size a second seed would move them; run `cem reproduce --replicates "
                "N` to measure it.")
    rows = run.replicates[run.replicates["metric"] == "internal auc"]
    if rows.empty:
        return ""
    widest = rows.loc[rows["sd"].idxmax()]
    return (f"Across {run.replicate_count} training seeds the internal AUCs move with SD up to "
            f"{widest['sd']:.3f} ({model_label(widest['model'])}); a difference between models smaller than "
            "about twice that is not a property of the fusions.")


def _check_limitations(run: RunFacts) -> list[str]:
    if run.check is None or run.check.comparison is None:
        return []
    table = run.check.comparison
    headline = table[table["headline"]]
    blind = headline[~headline["informative"].astype(bool)]
    if blind.empty:
        return []
    names = ", ".join(f"{_metric_words(run, r.metric)} of {model_label(r.model)}"
                      for r in blind.itertuples())
    chance = pd.to_numeric(blind["chance"], errors="coerce").dropna()
    odds = (f" with probability {chance.min():.3g} to {chance.max():.3g}" if len(chance) > 1 else
            f" with probability {chance.iloc[0]:.3g}" if len(chance) else "")
    checked = headline[headline["informative"].astype(bool)]
    rest = ("; only " + ", ".join(f"{_metric_words(run, r.metric)} of {model_label(r.model)}"
                                  for r in checked.itertuples()) + " is checked" if len(checked) else
            "; no headline metric is checked")
    return [f"Reference bands that check nothing: {len(blind)} of the {len(headline)} headline metrics of "
            f"`cem check` ({names}) lie in bands that a model at chance lands in{odds}, so they are neither "
            f"passed nor failed{rest}. A reference made of more replicates, or larger test sets, narrows "
            "them."]


def _metric_words(run: RunFacts, metric: str) -> str:
    """'cddcesm auc' -> 'the AUC on the synthetic replica of CDD-CESM', 'internal sen' -> 'the internal
    SEN'."""
    where, _, name = str(metric).rpartition(" ")
    label = name.upper() if name in ("auc", "sen", "spe") else name
    key = dataset_key(where) if where else None
    if key in (None, "internal"):
        return f"the {where + ' ' if where else ''}{label}".replace("  ", " ")
    return f"the {label} on the {dataset_text(run, key)}"


# ---------------------------------------------------------------------------------------------------
# methods, one paragraph per notebook section


def _rates_method(run: RunFacts) -> str:
    level = f"{run.level * 100:g}%"
    return (f"AUC with its DeLong {level} CI; ACC, SEN, SPE, PPV and NPV at the fixed threshold "
            f"{run.threshold:g} on the predicted probability of malignancy (the paper's rule, chosen before "
            f"this run and not tuned on it) with {CI_METHODS.get(run.ci_method, run.ci_method)} {level} CIs")


def methods(notebook: str, run: RunFacts) -> str:
    """The methods paragraph of a notebook section ('00' .. '05')."""
    facts = run.settings
    if notebook == "00":
        split = facts.get("split") or (0.7, 0.1, 0.2)
        ratio = ":".join(f"{round(10 * float(v)):g}" for v in split)
        return (f"Unit: the patient for the split and Table 2, the breast for Table 1's BI-RADS and "
                f"pathology rows. Patients are split {ratio} (training:validation:test) at patient level, "
                f"stratified by patient class, with seed {facts.get('seed', 0)}, so no patient's images "
                "appear in two partitions.")
    if notebook == "01":
        window = facts.get("window") or "adaptive"
        rng = facts.get("window_range")
        size = facts.get("size", PAPER_INPUT_SIZE)
        inside = f" inside raw {rng[0]:g}..{rng[1]:g}" if rng else ""
        return (f"Each view is windowed ({window} window{inside}"
                + f"; DES: {facts.get('des_window') or 'per image'} window), cropped to the breast, oriented "
                f"and resized to {size[0]} × {size[1]} pixels once, then cached. Unit: the image.")
    if notebook == "02":
        ran = epochs_run(run)
        return (f"Stage 1 trains the {_model_scale(run)} on single views, stage 2 the fusion network "
                f"initialised from it; SGD (learning rate {facts.get('lr')}, batch "
                f"{facts.get('batch_size')}) "
                f"for {_epochs_planned(run)}, stopping after {facts.get('patience')} epochs without a lower "
                f"validation loss. Model selection: the epoch with the lowest validation loss is kept."
                + (f" Epochs actually run ({model_label(MAIN_MODEL)}, from the run's logs): {ran}."
                   if ran else
                   " The run's per-epoch logs were not found beside this report; the table below gives the "
                   "epochs the notebook recorded."))
    if notebook == "03":
        auc = run.metric(MAIN_MODEL, "auc")
        unit = (f"the breast ({int(auc['n_breasts'])} breasts of the internal test set, "
                f"{int(auc['n_malignant'])} malignant)" if auc is not None else "the breast")
        return (f"Unit of analysis: {unit}; a patient's two breasts are counted separately, as in the paper "
                f"(the clustered CIs below take the patient into account). {_rates_method(run)}. AUC "
                "differences: paired DeLong tests. Each model is the checkpoint of its lowest validation "
                "loss; nothing is selected on the test set.")
    if notebook == "04":
        sets = "; ".join(f"{dataset_text(run, k)}: {model_label(EXTERNAL_MODELS[k])}"
                         for k in run.external_sets() if k in EXTERNAL_MODELS)
        return (f"Each external set is scored once by the model the paper used on it ({sets}), without "
                f"retraining or re-thresholding. Unit: the breast. {_rates_method(run)}. Recalibration and "
                "operating points are fitted on the internal validation split only.")
    if notebook == "05":
        return (f"Grad-CAM++ maps of each breast's malignancy score, min-max scaled per view, drawn over the "
                f"DES image. Pointing game: unit the view of a correctly called malignant breast (score at "
                f"least {run.threshold:g}) with a lesion mask; a hit when the map's peak lies inside the "
                "lesion, beside the same model with randomised weights and two no-model baselines on the "
                "same views.")
    return ""


# ---------------------------------------------------------------------------------------------------
# figure captions


def _auc_of(run: RunFacts, model: str, dataset: str = "internal") -> str:
    return _ci(run.metric(model, "auc", dataset))


def figure_caption(stem: str, run: RunFacts) -> str:
    """What a figure shows, by its file stem (figures/<stem>.png), with the run's numbers where they count."""
    main = model_label(MAIN_MODEL)
    if stem == "fig1_flow":
        return "Flow of patients: found, excluded with their reason, kept, and per split." + _flow_text(run)
    if stem.startswith("qc_preprocessing"):
        return ("Quality control of preprocessing, one training exam (pseudonymous): raw and preprocessed LE "
                "and DES of the four views; each preprocessed panel gives its window in raw grey levels and "
                "the rule that chose it. Raw panels are shown between the 1st and 99.5th percentiles of "
                "their breast's grey levels.")
    if stem == "intensity_histograms":
        sets = ", ".join(["internal cohort", *[dataset_text(run, k) for k in run.external_sets()]])
        return (f"Grey-level distributions of sampled LE and DES images: raw, in each detector's own units "
                f"({sets}), then after windowing, cropping and resizing (network input, 0 to 1).")
    if stem == "loader_batch":
        return ("One training batch as the loader serves it after augmentation (flips and a rotation within "
                "±10°, the same for the four views of a patient): LE row and DES row per exam.")
    if stem.startswith("learning_curves_"):
        folder = stem[len("learning_curves_"):]
        inputs, _, fusion = folder.partition("_")
        ran = epochs_run(run, folder)
        flat = [c for c in flat_training(run) if c.model in (folder, f"{inputs}_stage1")]
        text = (f"Learning curves of {model_label(model_name(fusion, inputs))}: training and validation loss "
                "per epoch of stage 1 and stage 2 against the loss of predicting the prevalence (grey), and "
                "validation AUC per breast; dotted line: the kept epoch.")
        if ran:
            text += f" {ran[0].upper()}{ran[1:]}."
        if flat:
            text += " Flat: " + ", ".join(c.stage.replace("stage", "stage ") for c in flat) + (
                " stayed at chance and barely moved its validation loss.")
        elif run.training is not None:
            text += " Neither stage's curve is flat."
        return text
    if stem == "fig4_roc":
        le, cem = model_name("mf_concat", "le"), MAIN_MODEL
        return (f"ROC curves of the LE (a) and CEM (b) models on the internal test set, per breast; AUC in "
                f"the legend. {model_label(cem)}: AUC {_auc_of(run, cem)}; {model_label(le)}: "
                f"{_auc_of(run, le)}.")
    if stem == "external_roc":
        parts = [f"the {dataset_text(run, k)} scored with {model_label(EXTERNAL_MODELS[k])}, AUC "
                 f"{_auc_of(run, EXTERNAL_MODELS[k], k)}"
                 for k in run.external_sets() if k in EXTERNAL_MODELS]
        return "ROC curves on the external sets, per breast: " + "; ".join(parts) + "."
    if stem == "replicates_auc":
        return (f"Internal test AUC of each model under each of the {run.replicate_count} training seeds "
                "(points), with their mean and SD.")
    if stem == "birads_scores":
        return ("Predicted probability of malignancy per breast by BI-RADS category of the internal test set,"
                " "
                "malignant and benign breasts apart; the dashed line is the threshold.")
    if stem.startswith("reliability_"):
        where = "internal test set" if stem.endswith("internal") else "external sets"
        return (f"Reliability diagrams, {where}: observed share of malignant breasts against mean predicted "
                "probability in 10 equal-width bins, with the breasts per bin as bars; the diagonal is "
                "perfect calibration.")
    if stem.startswith("decision_curve_"):
        where = "internal test set" if stem.endswith("internal") else "external sets"
        return (f"Decision curves, {where}: net benefit of biopsying the breasts whose probability reaches "
                "the threshold probability, beside biopsying all and none.")
    if stem.startswith("forest_"):
        where = (f"internal test set, {main}" if stem.endswith("internal") else
                 "external sets, each with its model")
        return (f"AUC per subgroup with its DeLong 95% CI ({where}); subgroups too small to estimate are "
                "left out.")
    match = re.fullmatch(r"errors_(\w+?)_(fn|fp)_(\d+)", stem)
    if match:
        key, kind, k = match.groups()
        error = "false negative" if kind == "fn" else "false positive"
        rank = "the most" if int(k) == 1 else f"the {_ordinal(int(k))} most"
        return (f"{main} on the {dataset_text(run, key)}: {rank} confident {error} at threshold "
                f"{run.threshold:g}; LE, DES and Grad-CAM++ of each view.")
    match = re.fullmatch(r"fig(5|6)_cams_(\w+?)_(\d+)", stem)
    if match:
        _, key, k = match.groups()
        model = MAIN_MODEL if key == "internal" else EXTERNAL_MODELS.get(key, MAIN_MODEL)
        shown = "LE, DES and the map" if model.startswith("CEM") else "LE and the map"
        under = "DES" if model.startswith("CEM") else "LE"
        return (f"Grad-CAM++ of {model_label(model)} on a correctly called malignant exam of the "
                f"{dataset_text(run, key)} (case {k}): {shown} of each breast's malignancy score over the "
                f"{under} image (inferno colour map, transparent where the map is low).")
    return stem.replace("_", " ").capitalize() + "."


def _ordinal(k: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(k, f"{k}th")


def _flow_text(run: RunFacts) -> str:
    if run.flow is None or run.flow.empty:
        return ""
    counts = dict(zip(run.flow.iloc[:, 0].astype(str), run.flow.iloc[:, 1], strict=False))
    found, kept = counts.get("patients found"), counts.get("patients kept")
    if found is None or kept is None:
        return ""
    excluded = int(found) - int(kept)
    return f" This run: {int(found)} patients found, {excluded} excluded, {int(kept)} kept."


def missing_figure_note(stem_prefix: str, run: RunFacts, present: list[str]) -> str:
    """Why a Grad-CAM++ figure family (fig5_cams: internal, fig6_cams: external) has no member for a
    dataset: no malignant exam was called malignant there."""
    keys = {"fig5_cams": ["internal"], "fig6_cams": run.external_sets()}.get(stem_prefix, [])
    missing = [dataset_text(run, k) for k in keys
               if not any(stem.startswith(f"{stem_prefix}_{k}_") for stem in present)]
    if not missing:
        return ""
    return (f"No Grad-CAM++ figure for the {' or the '.join(missing)}: no malignant exam was called "
            "malignant "
            "there in this run.")
