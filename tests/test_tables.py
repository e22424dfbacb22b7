"""cemlib.results.tables and cemlib.results.figures on a hand-made predictions table and a small breasts
table."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cemlib.core import vocab
from cemlib.results import build as results
from cemlib.results import claims, stats, tables
from cemlib.results import figures as plots
from cemlib.study.commands import tables as tables_command

REFERENCE = Path(__file__).resolve().parents[1] / "data_manifest" / "paper_reference.csv"
BIRADS_CYCLE = ("1", "2", "3", "3-4A", "4A", "4B", "4C", "5", "0", "6")
STRENGTH = {"none": 0.5, "left_right": 0.8, "mf_average": 1.0, "mf_concat": 1.1}


def make_breasts(n_patients: int = 60, seed: int = 0) -> pd.DataFrame:
    """Two breasts per patient, a third malignant, splits 7:1:2, assorted BI-RADS, age and density."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_patients):
        pid = f"P{i:03d}"
        split = "train" if i < 0.7 * n_patients else ("val" if i < 0.8 * n_patients else "test")
        malignant_side = rng.choice(["L", "R", "none", "none"] if i % 17 else ["both"])
        age = float(rng.integers(25, 80))
        for side in ("L", "R"):
            label = int(malignant_side in (side, "both"))
            birads = BIRADS_CYCLE[(i + (side == "R")) % len(BIRADS_CYCLE)]
            rows.append(
                {
                    "dataset": "synthetic",
                    "patient_id": pid,
                    "side": side,
                    "label": label,
                    "birads": birads,
                    "pathology": "IDC" if label else "benign",
                    "age": age,
                    "density": "abcd"[(i * 2 + (side == "R")) % 4] if i % 9 else "",
                    "split": split,
                }
            )
    return pd.DataFrame(rows)


def make_predictions(breasts: pd.DataFrame, models=vocab.MODELS, seed: int = 1) -> pd.DataFrame:
    """Malignant probabilities correlated with the labels, stronger for fusion and for CEM."""
    rng = np.random.default_rng(seed)
    frames = []
    shared = rng.normal(0, 1, len(breasts))
    for model in models:
        inputs, fusion = model.split(" ")
        strength = STRENGTH[fusion] + (0.3 if inputs == "CEM" else 0.0)
        logit = (
            strength * (breasts["label"].to_numpy() - 0.5) * 2
            + 0.6 * shared
            + rng.normal(0, 0.8, len(breasts))
        )
        frame = breasts[["dataset", "patient_id", "side", "label", "split"]].copy()
        frame["score"] = 1 / (1 + np.exp(-logit))
        frame["model"] = model
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def breasts() -> pd.DataFrame:
    return make_breasts(300)


@pytest.fixture(scope="module")
def predictions(breasts) -> pd.DataFrame:
    return make_predictions(breasts)


@pytest.fixture(scope="module")
def built(predictions, breasts) -> dict[str, pd.DataFrame]:
    return results.build_tables(predictions, breasts, reference=claims.load_reference(REFERENCE))


# ------------------------------------------------------------------ formatting


def test_format_ci_and_p_like_the_paper():
    assert tables.format_ci(0.9612, 0.9501, 0.9749) == "0.96 (0.95, 0.97)"
    assert tables.format_ci(float("nan"), float("nan"), float("nan")) == "n/a"
    assert tables.format_ci(-0.0004, -0.01, 0.004, 3) == "0.000 (-0.010, 0.004)"
    assert [
        tables.format_p(p) for p in (0.0004, 0.0031, 0.006, 0.9123, 0.61, 0.0496, 0.9991, float("nan"))
    ] == ["< .001", ".003", ".006", ".91", ".61", ".050", "> .99", "n/a"]


def test_markdown_and_latex_writers_escape():
    df = pd.DataFrame({"Model": ["a_b | c"], "P": ["< .001"], "Age": ["53 ± 12 (17-85)"]})
    md = results.to_markdown(df)
    assert md.splitlines()[0] == "| Model | P | Age |" and "a_b \\| c" in md
    tex = results.to_latex(df, "Caption 50%")
    assert r"a\_b | c & $<$ .001 & 53 $\pm$ 12 (17-85) \\" in tex and r"\caption{Caption 50\%}" in tex


# ------------------------------------------------------------------ Tables 1 and 2


def test_table2_hand_checked():
    rows = []
    # train: P1 bilateral benign, P2 unilateral, P3 bilateral malignant; val: P4 unilateral;
    # test: P5, P6 bilateral benign
    spec = {
        "P1": ("train", 0, 0),
        "P2": ("train", 1, 0),
        "P3": ("train", 1, 1),
        "P4": ("val", 0, 1),
        "P5": ("test", 0, 0),
        "P6": ("test", 0, 0),
    }
    for pid, (split, left, right) in spec.items():
        for side, label in (("L", left), ("R", right)):
            rows.append({"dataset": "d", "patient_id": pid, "side": side, "label": label, "split": split})
    t2 = tables.table2_patient_classes(pd.DataFrame(rows)).set_index("Patient class")
    assert list(t2.columns) == ["Training", "Validation", "Test", "Overall"]
    assert t2.loc["Bilateral benign"].tolist() == [1, 0, 2, "3 (50.0%)"]
    assert t2.loc["Unilateral malignant"].tolist() == [1, 1, 0, "2 (33.3%)"]
    assert t2.loc["Bilateral malignant"].tolist() == [1, 0, 0, "1 (16.7%)"]
    assert t2.loc["Total"].tolist() == [3, 1, 2, "6"]


def test_table2_counts_add_up(breasts, built):
    t2 = built["table2_patient_classes"].set_index("Patient class")
    per_split = t2.drop(index="Total")[["Training", "Validation", "Test"]]
    assert per_split.to_numpy().sum() == breasts["patient_id"].nunique() == int(t2.loc["Total", "Overall"])
    assert (per_split.sum() == t2.loc["Total", ["Training", "Validation", "Test"]]).all()


def test_table1_characteristics(breasts, built):
    t1 = built["table1_characteristics"].set_index("Characteristic")
    assert list(t1.columns) == ["All", "Training", "Validation", "Test"]
    assert t1.loc["Breasts, n", "All"] == str(len(breasts)) and t1.loc["Patients, n", "All"] == "300"
    ages = breasts.groupby("patient_id")["age"].first()
    assert (
        t1.loc["Age, years: mean ± SD (range)", "All"]
        == f"{ages.mean():.0f} ± {ages.std():.0f} ({ages.min():.0f}-{ages.max():.0f})"
    )
    birads_rows = [r for r in t1.index if r.startswith("BI-RADS")]
    assert birads_rows[:4] == ["BI-RADS 0", "BI-RADS 1", "BI-RADS 2", "BI-RADS 3"]
    counts = [int(t1.loc[r, "All"].split(" ")[0]) for r in birads_rows]
    assert sum(counts) == len(breasts)
    n_malignant = int(breasts["label"].sum())
    assert t1.loc["Malignant breasts", "All"] == f"{n_malignant} ({100 * n_malignant / len(breasts):.1f}%)"


# ------------------------------------------------------------------ Tables 3, 4, 5


def test_tables_3_and_4_match_stats(predictions, built):
    t4 = built["table4_cem"].set_index("Model")
    assert list(t4.index) == [f"CEM {vocab.FUSION_LABELS[f]}" for f in vocab.FUSIONS]
    test = predictions[(predictions["model"] == "CEM mf_concat") & (predictions["split"] == "test")]
    auc = stats.auc_ci(test["label"], test["score"])
    assert t4.loc["CEM MF fusion (concatenation)", "AUC"] == tables.format_ci(*auc)
    assert auc.estimate == pytest.approx(roc_auc_score(test["label"], test["score"]))
    sen = stats.classification_metrics(test["label"], test["score"])["sen"]
    assert t4.loc["CEM MF fusion (concatenation)", "SEN"] == tables.format_ci(*sen)
    for cell in built["table3_le"]["ACC"]:
        assert len(cell) == len("0.96 (0.95, 0.97)") and cell[4:6] == " ("


def test_table5_pairs_and_p_values(predictions, built):
    t5 = built["table5_delong"]
    assert len(t5) == 8 and t5["P (paper)"].tolist() == [
        "< .001",
        ".91",
        "< .001",
        ".61",
        "< .001",
        ".003",
        "< .001",
        ".006",
    ]
    pair = tables.paired_scores(predictions, "LE none", "LE left_right")
    r = stats.delong_test(pair["label"], pair["score_a"], pair["score_b"])
    assert t5.loc[0, "P"] == tables.format_p(r.p_value)
    assert t5.loc[0, "Comparison"] == "LE No fusion vs LE Left-right fusion"


def test_confusion_counts_add_up(predictions, built):
    conf = built["table_confusion"].set_index("Model")
    n_test = int((predictions["split"] == "test").sum() / 8)
    for model in conf.index:
        counts = [int(conf.loc[model, c]) for c in ("TP", "FP", "TN", "FN")]
        assert sum(counts) == int(conf.loc[model, "Breasts"]) == n_test
        fp = counts[1]
        assert conf.loc[model, "Benign called malignant"] == f"{fp} ({100 * fp / n_test:.1f}%)"


def test_birads_groups_and_density(predictions, breasts, built):
    groups = built["table_birads_groups"]
    concat = groups[groups["Model"] == "CEM MF fusion (concatenation)"].set_index("BI-RADS")
    test = breasts[breasts["split"] == "test"]
    in_group4 = test["birads"].isin(["3-4A", "4A", "4B", "4C"])
    assert int(concat.loc["4 (3-4A, 4A, 4B, 4C)", "Breasts"]) == int(in_group4.sum())
    assert int(concat.loc["1, 2, 3, 5", "Breasts"]) == int(test["birads"].isin(["1", "2", "3", "5"]).sum())
    density = built["table_density"]
    one = density[density["Model"] == "CEM MF fusion (concatenation)"]
    assert one["Breasts"].sum() == len(test) and set(one["Density"]) <= {"a", "b", "c", "d", "unknown"}
    wrong = one["Misclassified"].str.split(" ").str[0].astype(int)
    assert (wrong == one["False positive"] + one["False negative"]).all()
    conf = built["table_confusion"].set_index("Model").loc["CEM MF fusion (concatenation)"]
    assert wrong.sum() == int(conf["FP"]) + int(conf["FN"])


def test_scorecard_and_comparison(built):
    card = built["scorecard"]
    claims_rows, summary = card.iloc[:16], card.iloc[16:]
    assert len(claims_rows) == 4 + 6 + 4 + 2 and len(summary) == 5
    assert set(claims_rows["Verdict"]) <= set(claims.VERDICTS)
    # the hand-made scores are stronger for MF fusion than for no fusion: significantly so at 120 breasts
    assert (claims_rows["Verdict"][[5, 6, 11, 12]] == "holds").all()
    counts = summary.set_index("Claim")["This run"]
    three = [counts[f"Claims {w}"] for w in ("that hold", "contradicted", "inconclusive")]
    assert all(c.endswith("of 16 assessable") for c in three) and sum(int(c.split()[0]) for c in three) == 16
    comp = built["table_comparison"]
    assert len(comp) == 8 * 6 + 2 * 4
    inside = comp[comp["Paper value within this run's CI"] != tables.MISSING]
    assert set(inside["Paper value within this run's CI"]) <= {"yes", "no"}
    assert (comp[comp["Dataset"] != "internal"]["This run"] == tables.MISSING).all()


def test_scorecard_reports_claims_that_fail(predictions):
    swapped = predictions.assign(
        model=predictions["model"].map(
            lambda m: m.replace("LE", "TMP").replace("CEM", "LE").replace("TMP", "CEM")
        )
    )
    card = results.build_tables(swapped, reference=claims.load_reference(REFERENCE))["scorecard"]
    # LE now scores higher: no "CEM beats LE" claim holds, and the significant one is contradicted
    assert "holds" not in set(card["Verdict"][:4]) and card.loc[1, "Verdict"] == "contradicted"
    assert card.loc[0, "This run"].startswith("AUC ") and card.loc[0, "Paper"] == "AUC 0.93 vs 0.90, P < .001"


# ------------------------------------------------------------------ subsets, errors, writers


def test_subset_of_models_marks_missing(breasts, tmp_path):
    subset = make_predictions(breasts, models=("LE mf_concat", "CEM mf_concat"))
    written = results.write_all(subset, breasts, tmp_path)
    t3 = pd.read_csv(written["table3_le.csv"], dtype=str, keep_default_na=False).set_index("Model")
    assert (
        t3.loc["LE No fusion", "AUC"] == tables.MISSING
        and t3.loc["LE MF fusion (concatenation)", "AUC"] != tables.MISSING
    )
    t5 = pd.read_csv(written["table5_delong.csv"], dtype=str, keep_default_na=False)
    assert (t5["P"] == tables.MISSING).sum() == 7 and t5.loc[7, "P"] != tables.MISSING
    card = pd.read_csv(written["scorecard.csv"], dtype=str, keep_default_na=False)
    # of the 16 claims only "CEM beats LE (MF concatenation)" has both its models here
    assert (card["Verdict"] == "not assessable").sum() == 15


def test_external_rows_and_youden(breasts):
    internal = make_predictions(breasts, models=("CEM mf_concat",))
    ext_breasts = make_breasts(40, seed=5).assign(dataset="CDD-CESM", split="external")
    external = make_predictions(ext_breasts, models=("CEM mf_concat",), seed=3)
    both = pd.concat([internal, external], ignore_index=True)
    built = results.build_tables(
        both,
        pd.concat([breasts, ext_breasts]),
        threshold="youden",
        reference=claims.load_reference(REFERENCE),
    )
    ext = built["table_external"]
    assert ext["Dataset"].tolist() == ["CDD-CESM"] and ext.loc[0, "Breasts"] == "80"
    comp = built["table_comparison"]
    assert (comp[comp["Dataset"] == "CDD-CESM"]["This run"] != tables.MISSING).all()
    val = internal[internal["split"] == "val"]
    youden = stats.youden_threshold(val["label"], val["score"])
    assert (
        built["table_confusion"].set_index("Model").loc["CEM MF fusion (concatenation)", "Threshold"]
        == f"{youden:.3g}"
    )


def test_clear_errors(predictions, breasts, tmp_path):
    with pytest.raises(ValueError, match="missing column"):
        tables.validate_predictions(predictions.drop(columns="score"))
    bad = predictions.copy()
    bad.loc[3, "score"] = np.nan
    with pytest.raises(ValueError, match="non-numeric score"):
        tables.validate_predictions(bad)
    with pytest.raises(ValueError, match="duplicated"):
        tables.validate_predictions(pd.concat([predictions, predictions.iloc[:1]]))
    flipped = breasts.copy()
    flipped.loc[0, "label"] = 1 - flipped.loc[0, "label"]
    with pytest.raises(ValueError, match="differ between predictions and manifest"):
        results.build_tables(predictions, flipped)
    with pytest.raises(FileNotFoundError, match="predictions file not found"):
        tables.load_predictions(tmp_path / "nope.csv")


def test_write_all_and_cli(predictions, breasts, tmp_path):
    manifest = tmp_path / "manifest"
    manifest.mkdir()
    breasts.to_csv(manifest / "breasts.csv", index=False)
    pred_path = tmp_path / "predictions.csv"
    predictions.to_csv(pred_path, index=False)
    parser = argparse.ArgumentParser()
    tables_command.configure_parser(parser)
    out = tmp_path / "out"
    args = parser.parse_args(
        ["--predictions", str(pred_path), "--manifest", str(manifest), "--out", str(out)]
    )
    assert tables_command.run_cli(args) == 0
    for stem in (
        "table1_characteristics",
        "table2_patient_classes",
        "table3_le",
        "table4_cem",
        "table5_delong",
        "table_external",
        "table_birads_groups",
        "table_confusion",
        "table_density",
        "scorecard",
        "table_comparison",
    ):
        for suffix in ("csv", "md", "tex"):
            assert (out / f"{stem}.{suffix}").stat().st_size > 0
    assert (out / "fig4_roc.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "fig4_roc.pdf").read_bytes()[:5] == b"%PDF-"
    metrics = pd.read_csv(out / "metrics.csv")
    auc = metrics[(metrics["model"] == "LE none") & (metrics["metric"] == "auc")]["estimate"].iloc[0]
    test = predictions[(predictions["model"] == "LE none") & (predictions["split"] == "test")]
    assert auc == pytest.approx(roc_auc_score(test["label"], test["score"]))


def test_roc_figure_legend_has_auc(predictions):
    fig = plots.roc_figure(predictions)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["(a) LE models", "(b) CEM models"]
    labels = [t.get_text() for t in axes[1].get_legend().get_texts()]
    test = predictions[(predictions["model"] == "CEM none") & (predictions["split"] == "test")]
    assert labels[0] == f"CEM No fusion (AUC = {roc_auc_score(test['label'], test['score']):.2f})"
    assert len(labels) == 4


def test_reference_table_holds_the_papers_values():
    ref = claims.load_reference(REFERENCE)
    cem = ref[(ref["model"] == "CEM mf_concat") & (ref["metric"] == "auc") & (ref["table"] == "4")].iloc[0]
    assert (cem["value"], cem["ci_low"], cem["ci_high"]) == (0.96, 0.95, 0.97)
    assert len(ref[ref["metric"] == "delong_p"]) == 8 and len(ref[ref["table"].isin(["3", "4"])]) == 48
    assert not math.isnan(ref[ref["dataset"] == "INbreast"]["value"].sum())
