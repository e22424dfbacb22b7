"""The reporting checklists a radiology journal asks for, each item with where this study answers it.

CLAIM 2024 (Checklist for Artificial Intelligence in Medical Imaging, 2024 update; Tejani et al., Radiol
Artif Intell 2024) and TRIPOD+AI (Collins et al., BMJ 2024;385:e078378). Item wording is abbreviated; the
item numbers follow the published lists as far as the authors of this module had them at hand, so check
them against the journal's own copy before a submission.

Each item is answered by references: a notebook section (`section`, the notebook's number and a heading
of it), a table (`table`, a file stem in reports/<profile>/tables) or a figure (`figure`, a stem in
reports/<profile>/figures), or says why it does not apply or cannot be answered from a run of this kit.
`section_references` lists the sections so that a test can check that each one exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

ANSWERED, PARTLY, NOT_APPLICABLE, NOT_FROM_RUN = ("answered", "partly", "not applicable",
                                                  "cannot be answered from this run")
NOTEBOOKS = {"00": "00 Cohort", "01": "01 Preprocessing", "02": "02 Training", "03": "03 Ablations",
             "04": "04 External validation", "05": "05 Grad-CAM++ maps"}
Ref = tuple[str, ...]

# Sections of the notebooks the items point at (each must exist: tests/test_journal_tables.py checks).
FLOW = ("section", "00", "Fig. 1: exclusions")
TABLE1 = ("section", "00", "Table 1: patient characteristics")
TABLE2 = ("section", "00", "Table 2: patients per class and split")
QC = ("section", "01", "QC: raw vs preprocessed")
WINDOW = ("section", "01", "How each window was chosen")
CURVES = ("section", "02", "Learning curves")
TABLE3 = ("section", "03", "Table 3: LE inputs")
TABLE4 = ("section", "03", "Table 4: CEM inputs")
TABLE5 = ("section", "03", "Table 5: DeLong tests")
REPLICATES = ("section", "03", "Replicates: the spread across training seeds")
BIRADS = ("section", "03", "Accuracy by BI-RADS group")
CALIBRATION = ("section", "03", "Calibration")
OPERATING = ("section", "03", "Operating points chosen on the validation split")
DECISION = ("section", "03", "Decision curve")
SUBGROUPS = ("section", "03", "Subgroups")
CLUSTERING = ("section", "03", "The unit of analysis: breasts within patients")
FAILURES = ("section", "03", "Failure analysis: the most confident errors")
EXTERNAL = ("section", "04", "AUC, ACC, SEN, SPE with 95% CIs")
EXTERNAL_CALIBRATION = ("section", "04", "Calibration on the external sets")
EXTERNAL_SUBGROUPS = ("section", "04", "Subgroups of the external sets")
CLAIMS = ("section", "04", "The paper's claims against this run")
CAMS = ("section", "05", "Fig. 5: internal cases")

STUDY = "a reproduction kit: the manuscript's own text, not a run, answers this"
PHANTOM = "the embedded cohort is a synthetic phantom; on a user's data the user's records answer this"

#: (guideline, item, topic, status, references or reason)
ITEMS: tuple[tuple[str, str, str, str, Sequence[Ref] | str], ...] = (
    ("CLAIM 2024", "1", "Title identifies an AI study and its technique", NOT_FROM_RUN, STUDY),
    ("CLAIM 2024", "2", "Structured abstract", NOT_FROM_RUN, STUDY),
    ("CLAIM 2024", "3", "Background, intended use and clinical role", NOT_FROM_RUN, STUDY),
    ("CLAIM 2024", "4", "Objectives and hypotheses", PARTLY, [CLAIMS]),
    ("CLAIM 2024", "5", "Prospective or retrospective design", NOT_FROM_RUN, STUDY),
    ("CLAIM 2024", "6", "Study goal (model creation, validation, ...)", ANSWERED, [TABLE3, EXTERNAL]),
    ("CLAIM 2024", "7", "Data sources", PARTLY, [FLOW, EXTERNAL]),
    ("CLAIM 2024", "8", "Eligibility criteria", ANSWERED, [FLOW]),
    ("CLAIM 2024", "9", "Data preprocessing", ANSWERED, [QC, WINDOW]),
    ("CLAIM 2024", "10", "Selection of data subsets", ANSWERED, [TABLE2]),
    ("CLAIM 2024", "11", "Definitions of data elements", PARTLY, [TABLE1]),
    ("CLAIM 2024", "12", "De-identification", PARTLY, "cases are named by pseudonym in every output; the "
                                                      "source data's de-identification is the provider's"),
    ("CLAIM 2024", "13", "Missing data", PARTLY, [FLOW, SUBGROUPS]),
    ("CLAIM 2024", "14", "Reference standard (ground truth)", NOT_FROM_RUN, PHANTOM),
    ("CLAIM 2024", "15", "Rationale for the reference standard", NOT_FROM_RUN, PHANTOM),
    ("CLAIM 2024", "16", "Annotators and their qualifications", NOT_FROM_RUN, PHANTOM),
    ("CLAIM 2024", "17", "Annotation tools", NOT_FROM_RUN, PHANTOM),
    ("CLAIM 2024", "18", "Inter- and intra-rater variability", NOT_FROM_RUN, PHANTOM),
    ("CLAIM 2024", "19", "Intended sample size and how it was determined", NOT_FROM_RUN,
     "the paper's cohort sizes are reproduced, not planned here"),
    ("CLAIM 2024", "20", "How data were assigned to partitions", ANSWERED, [TABLE2]),
    ("CLAIM 2024", "21", "Level at which partitions are disjoint (patient)", ANSWERED, [TABLE2, CLUSTERING]),
    ("CLAIM 2024", "22", "Detailed model description", PARTLY, [CURVES]),
    ("CLAIM 2024", "23", "Software libraries and versions", PARTLY,
     "the report's title page and environment.json list the versions of every package"),
    ("CLAIM 2024", "24", "Initialisation of model parameters", PARTLY, [CURVES]),
    ("CLAIM 2024", "25", "Training details (augmentation, hyperparameters)", ANSWERED, [CURVES]),
    ("CLAIM 2024", "26", "Selection of the final model", ANSWERED, [CURVES]),
    ("CLAIM 2024", "27", "Ensembling", NOT_APPLICABLE, "no ensemble: each model is one network"),
    ("CLAIM 2024", "28", "Performance metrics", ANSWERED, [TABLE3, TABLE4, CALIBRATION, DECISION]),
    ("CLAIM 2024", "29", "Statistical significance and uncertainty", ANSWERED, [TABLE5, CLUSTERING]),
    ("CLAIM 2024", "30", "Robustness or sensitivity analysis", ANSWERED, [REPLICATES, SUBGROUPS]),
    ("CLAIM 2024", "31", "Explainability or interpretability", ANSWERED, [CAMS, FAILURES]),
    ("CLAIM 2024", "32", "Evaluation on external data", ANSWERED, [EXTERNAL, EXTERNAL_CALIBRATION]),
    ("CLAIM 2024", "33", "Flow of participants or cases", ANSWERED, [FLOW]),
    ("CLAIM 2024", "34", "Characteristics of cases in each partition", ANSWERED, [TABLE1, TABLE2]),
    ("CLAIM 2024", "35", "Performance on all partitions", PARTLY, [TABLE3, EXTERNAL]),
    ("CLAIM 2024", "36", "Diagnostic accuracy estimates with their precision", ANSWERED, [OPERATING]),
    ("CLAIM 2024", "37", "Failure analysis of incorrectly classified cases", ANSWERED, [FAILURES]),
    ("CLAIM 2024", "38", "Limitations, biases and generalisability", NOT_FROM_RUN, STUDY),
    ("CLAIM 2024", "39", "Implications for practice", PARTLY, [DECISION]),
    ("CLAIM 2024", "40", "Registration", NOT_FROM_RUN, STUDY),
    ("CLAIM 2024", "41", "Protocol, data and code availability", PARTLY, "the code is this kit; the data's "
                                                                         "availability is the provider's"),
    ("CLAIM 2024", "42", "Funding", NOT_FROM_RUN, STUDY),
    ("TRIPOD+AI", "1", "Title", NOT_FROM_RUN, STUDY),
    ("TRIPOD+AI", "2", "Abstract", NOT_FROM_RUN, STUDY),
    ("TRIPOD+AI", "3a-c", "Healthcare context, target population, health inequalities", NOT_FROM_RUN, STUDY),
    ("TRIPOD+AI", "4", "Objectives (development, evaluation or both)", PARTLY, [CLAIMS]),
    ("TRIPOD+AI", "5a-b", "Data sources and dates", PARTLY, [FLOW]),
    ("TRIPOD+AI", "6a-c", "Setting, eligibility, treatments", PARTLY, [FLOW, TABLE1]),
    ("TRIPOD+AI", "7", "Data preparation and quality checks", ANSWERED, [QC, WINDOW]),
    ("TRIPOD+AI", "8a-c", "Outcome and how it was assessed", NOT_FROM_RUN, PHANTOM),
    ("TRIPOD+AI", "9a-c", "Predictors (here: the images)", ANSWERED, [QC]),
    ("TRIPOD+AI", "10", "Sample size", NOT_FROM_RUN,
     "the paper's cohort sizes are reproduced, not planned here"),
    ("TRIPOD+AI", "11", "Missing data", PARTLY, [FLOW, SUBGROUPS]),
    ("TRIPOD+AI", "12a-g", "Analytical methods (incl. calibration and clustering)", ANSWERED,
     [TABLE5, CALIBRATION, CLUSTERING]),
    ("TRIPOD+AI", "13", "Class imbalance", PARTLY, [TABLE2, CALIBRATION]),
    ("TRIPOD+AI", "14", "Fairness: performance across groups", ANSWERED, [SUBGROUPS, EXTERNAL_SUBGROUPS]),
    ("TRIPOD+AI", "15", "Model output and decision thresholds", ANSWERED, [OPERATING, DECISION]),
    ("TRIPOD+AI", "16", "Differences between development and evaluation data", ANSWERED,
     [("section", "01", "Internal and external images"), EXTERNAL]),
    ("TRIPOD+AI", "17", "Ethical approval", NOT_FROM_RUN, STUDY),
    ("TRIPOD+AI", "18a-f", "Open science: funding, conflicts, protocol, registration, data, code", PARTLY,
     "the code is this kit; the rest is the manuscript's"),
    ("TRIPOD+AI", "19", "Patient and public involvement", NOT_FROM_RUN, STUDY),
    ("TRIPOD+AI", "20a-c", "Participant flow and characteristics", ANSWERED, [FLOW, TABLE1, TABLE2]),
    ("TRIPOD+AI", "21", "Participants and outcome events per analysis", ANSWERED, [TABLE2, TABLE3]),
    ("TRIPOD+AI", "22", "Full model specification", PARTLY, [CURVES]),
    ("TRIPOD+AI", "23a-b", "Performance with CIs, incl. calibration and key subgroups", ANSWERED,
     [CALIBRATION, SUBGROUPS, EXTERNAL_CALIBRATION]),
    ("TRIPOD+AI", "24", "Model updating (recalibration)", ANSWERED, [CALIBRATION]),
    ("TRIPOD+AI", "25", "Interpretation", NOT_FROM_RUN, STUDY),
    ("TRIPOD+AI", "26", "Limitations", NOT_FROM_RUN, STUDY),
    ("TRIPOD+AI", "27a-c", "Usability: poor-quality inputs, user interaction, applicability", PARTLY,
     [FAILURES, QC]),
)


def describe_reference(ref: Ref) -> str:
    """A reference as a reader reads it: '03 Ablations > Calibration', 'table calibration_internal'."""
    if ref[0] == "section":
        return f"{NOTEBOOKS[ref[1]]} > {ref[2]}"
    return f"{ref[0]} {ref[1]}"


def checklist_table(items=ITEMS) -> pd.DataFrame:
    """One row per item: guideline, item, topic, status and where it is answered (or why not)."""
    rows = []
    for guideline, item, topic, status, where in items:
        text = where if isinstance(where, str) else "; ".join(describe_reference(r) for r in where)
        rows.append({"Guideline": guideline, "Item": item, "Topic": topic, "Status": status,
                     "Where / why": text})
    return pd.DataFrame(rows)


def section_references(items=ITEMS) -> set[tuple[str, str]]:
    """Every (notebook number, heading) an item points at."""
    return {(r[1], r[2]) for *_, where in items if not isinstance(where, str) for r in where
            if r[0] == "section"}
