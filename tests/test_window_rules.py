"""The DES window rule as an ablation: the other rule's models in their own folder, the same seeds, and a
summary that pairs each seed with the study's rule (the whole path runs in tests/test_study.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cemlib.core.settings import load_profile
from cemlib.results import faithfulness
from cemlib.study import steps, window_rules


def test_the_other_rule_trains_in_its_own_folder_on_the_same_cohort(tmp_path):
    cfg = load_profile("smoke", {"des_window_ablation": "image"}, tmp_path)
    assert window_rules.study_rule(cfg) == "exam"
    other = window_rules.rule_settings(cfg, "image")
    assert Path(other.runs) == Path(cfg.runs) / "des_window-image"
    assert other.preprocess.des_window == "image"
    assert (other.data, other.seed, other.train, other.model, other.preprocess.cache) == (
        cfg.data, cfg.seed, cfg.train, cfg.model, cfg.preprocess.cache)
    assert window_rules.rule_settings(cfg, "exam") is cfg
    second = steps.replicate_settings(other, 2)  # replicate k of the other rule: same seed as the study's
    assert Path(second.runs) == Path(cfg.runs) / "des_window-image" / "replicates" / "2"
    assert second.train.seed == steps.replicate_settings(cfg, 2).train.seed


def test_the_ablation_forks_the_report_only(tmp_path):
    cfg = load_profile("smoke", {"des_window_ablation": "image"}, tmp_path)
    plain = load_profile("smoke", None, tmp_path)
    assert cfg.runs == plain.runs and cfg.preprocess.cache == plain.preprocess.cache
    assert cfg.reports == f"{plain.reports}-{cfg.variant}"


def test_no_key_no_table_and_bad_rules_refused(tmp_path):
    cfg = load_profile("smoke", None, tmp_path)
    table = window_rules.window_rule_table(cfg)
    assert table.empty and list(table.columns) == list(window_rules.COLUMNS)
    assert not (Path(cfg.reports) / "tables" / "des_window.csv").exists()
    with pytest.raises(ValueError, match="one of"):
        window_rules.window_rule_table(load_profile("smoke", {"des_window_ablation": "widest"}, tmp_path))
    with pytest.raises(ValueError, match="study's own DES rule"):
        window_rules.window_rule_table(load_profile("smoke", {"des_window_ablation": "exam"}, tmp_path))


def per_seed_rows() -> pd.DataFrame:
    model = "CEM mf_concat"
    rows = [("exam", "study", model, 0, 0.70, 0.40), ("exam", "study", model, 1, 0.72, 0.50),
            ("image", "ablation", model, 0, 0.65, 0.02), ("image", "ablation", model, 1, 0.74, 0.00)]
    frame = pd.DataFrame(rows, columns=["rule", "role", "model", "seed", "auc", "drop"])
    return frame.assign(auc_low=frame["auc"] - 0.1, auc_high=frame["auc"] + 0.1, breasts=20, mean_p=0.7,
                        mean_p_occluded=0.7 - frame["drop"])[list(window_rules.COLUMNS)]


def test_summary_pairs_each_seed_with_the_studys_rule():
    summary = faithfulness.window_rule_summary(per_seed_rows()).set_index("rule")
    assert summary.loc["exam", "auc_minus_study"] == 0 and summary.loc["exam", "seeds_below_study"] == 0
    image = summary.loc["image"]
    assert image["seeds"] == 2 and image["auc_mean"] == pytest.approx(0.695)
    assert (image["auc_min"], image["auc_max"]) == (0.65, 0.74)
    assert image["auc_minus_study"] == pytest.approx((-0.05 + 0.02) / 2, abs=1e-3)
    assert image["seeds_below_study"] == 1
    assert image["drop_mean"] == pytest.approx(0.01)
    assert summary.loc["exam", "drop_mean"] == pytest.approx(0.45)


def test_the_reference_runs_comparison_is_kept_and_shown(tmp_path, monkeypatch):
    kept = tmp_path / "des_window_smoke.csv"
    monkeypatch.setattr(window_rules, "reference_table_path", lambda name: kept)
    cfg = load_profile("smoke", None, tmp_path)
    empty = pd.DataFrame(columns=list(window_rules.COLUMNS))
    summary, source = window_rules.shown_comparison(cfg, empty)
    assert summary.empty and "not measured" in source
    tables = tmp_path / "tables"
    assert window_rules.keep_as_reference(tables, "smoke") is None  # a run without the comparison
    tables.mkdir()
    per_seed_rows().to_csv(tables / "des_window.csv", index=False)
    assert window_rules.keep_as_reference(tables, "smoke") == kept
    summary, source = window_rules.shown_comparison(cfg, empty)
    assert "reference run" in source and set(summary["rule"]) == {"exam", "image"}
    mine, source = window_rules.shown_comparison(cfg, per_seed_rows().iloc[:2])
    assert source == "measured in this run" and list(mine["rule"]) == ["exam"]
