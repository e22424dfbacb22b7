"""The reporting checklists a radiology journal asks for, each item with where this study answers it.

CLAIM 2024 (Checklist for Artificial Intelligence in Medical Imaging: 2024 Update; Tejani et al., Radiol
Artif Intell 2024;6(4):e240300) has 44 items: the 2020 list's 42 renumbered, with image acquisition
(13), evaluation on internal data (32), clinical trial registration (34) and the availability of software,
trained model and data (43) added or split out, and "ground truth" named "reference standard". The item
numbers and short names here follow the published checklist as RSNA's CLAIM site prints it
(`CLAIM_SOURCE`). TRIPOD+AI: Collins et al., BMJ 2024;385:e078378 (`TRIPOD_SOURCE`). Item wording is
abbreviated.

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

CLAIM = "CLAIM 2024"
CLAIM_SOURCE = ("Tejani AS, Klontzas ME, Gatti AA, et al. Checklist for Artificial Intelligence in Medical "
                "Imaging (CLAIM): 2024 Update. Radiol Artif Intell 2024;6(4):e240300. "
                "doi:10.1148/ryai.240300 (44 items; numbering as in the checklist on RSNA's CLAIM site)")
TRIPOD_SOURCE = ("Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement. BMJ 2024;385:e078378. "
                 "doi:10.1136/bmj-2023-078378")
STUDY = "a reproduction kit: the manuscript's own text, not a run, answers this"
PHANTOM = "the embedded cohort is a synthetic phantom; on a user's data the user's records answer this"

#: (guideline, item, topic, status, references or reason)
ITEMS: tuple[tuple[str, str, str, str, Sequence[Ref] | str], ...] = (
    (CLAIM, "1", "Identification as a study of AI methodology and its technique", NOT_FROM_RUN, STUDY),
    (CLAIM, "2", "Summary of study design, methods, results and conclusions", PARTLY,
     "the report's first page summarises this run from its own numbers; the manuscript's abstract is the "
     "authors'"),
    (CLAIM, "3", "Scientific and clinical background, intended use and role of the AI", NOT_FROM_RUN, STUDY),
    (CLAIM, "4", "Study aims, objectives and hypotheses", PARTLY, [CLAIMS]),
    (CLAIM, "5", "Prospective or retrospective study", NOT_FROM_RUN, STUDY),
    (CLAIM, "6", "Study goal (model creation, validation, ...)", ANSWERED, [TABLE3, EXTERNAL]),
    (CLAIM, "7", "Data sources", PARTLY, [FLOW, EXTERNAL]),
    (CLAIM, "8", "Inclusion and exclusion criteria", ANSWERED, [FLOW]),
    (CLAIM, "9", "Data pre-processing", ANSWERED, [QC, WINDOW]),
    (CLAIM, "10", "Selection of data subsets", ANSWERED, [TABLE2]),
    (CLAIM, "11", "De-identification methods", PARTLY, "cases are named by pseudonym in every output; the "
                                                       "source data's de-identification is the provider's"),
    (CLAIM, "12", "How missing data were handled", PARTLY, [FLOW, SUBGROUPS]),
    (CLAIM, "13", "Image acquisition protocol", PARTLY,
     "the phantom's simulated detectors are described in cemlib/synthetic/CARD.md; on a user's data the "
     "user's records answer this"),
    (CLAIM, "14", "Definition of the method(s) used to obtain the reference standard", NOT_FROM_RUN, PHANTOM),
    (CLAIM, "15", "Rationale for choosing the reference standard", NOT_FROM_RUN, PHANTOM),
    (CLAIM, "16", "Source of reference standard annotations", NOT_FROM_RUN, PHANTOM),
    (CLAIM, "17", "Annotation of the test set", NOT_FROM_RUN, PHANTOM),
    (CLAIM, "18", "Inter- and intra-rater variability of the annotators", NOT_FROM_RUN, PHANTOM),
    (CLAIM, "19", "How data were assigned to partitions", ANSWERED, [TABLE2]),
    (CLAIM, "20", "Level at which partitions are disjoint (patient)", ANSWERED, [TABLE2, CLUSTERING]),
    (CLAIM, "21", "Intended sample size of the test data", NOT_FROM_RUN,
     "the paper's cohort sizes are reproduced, not planned here"),
    (CLAIM, "22", "Detailed description of the model", PARTLY, [CURVES]),
    (CLAIM, "23", "Software libraries, frameworks and packages", PARTLY,
     "the report's title page and environment.json list the versions of every package"),
    (CLAIM, "24", "Initialisation of model parameters", PARTLY, [CURVES]),
    (CLAIM, "25", "Details of the training approach (augmentation, hyperparameters)", ANSWERED, [CURVES]),
    (CLAIM, "26", "Method of selecting the final model", ANSWERED, [CURVES]),
    (CLAIM, "27", "Ensembling techniques", NOT_APPLICABLE, "no ensemble: each model is one network"),
    (CLAIM, "28", "Metrics of model performance", ANSWERED, [TABLE3, TABLE4, CALIBRATION, DECISION]),
    (CLAIM, "29", "Statistical measures of significance and uncertainty", ANSWERED, [TABLE5, CLUSTERING]),
    (CLAIM, "30", "Robustness or sensitivity analysis", ANSWERED, [REPLICATES, SUBGROUPS]),
    (CLAIM, "31", "Methods for explainability or interpretability", ANSWERED, [CAMS, FAILURES]),
    (CLAIM, "32", "Evaluation on internal data", ANSWERED, [TABLE3, TABLE4]),
    (CLAIM, "33", "Testing on external data", ANSWERED, [EXTERNAL, EXTERNAL_CALIBRATION]),
    (CLAIM, "34", "Clinical trial registration", NOT_FROM_RUN, STUDY),
    (CLAIM, "35", "Numbers of patients or examinations included and excluded", ANSWERED, [FLOW]),
    (CLAIM, "36", "Demographic and clinical characteristics of cases in each partition", ANSWERED,
     [TABLE1, TABLE2]),
    (CLAIM, "37", "Performance metrics and measures of statistical uncertainty", ANSWERED,
     [TABLE3, TABLE4, EXTERNAL]),
    (CLAIM, "38", "Estimates of diagnostic performance and their precision", ANSWERED, [OPERATING]),
    (CLAIM, "39", "Failure analysis of incorrect results", ANSWERED, [FAILURES]),
    (CLAIM, "40", "Study limitations", PARTLY,
     "the report's limitations are generated from this run; the manuscript's discussion is the authors'"),
    (CLAIM, "41", "Implications for practice, intended use and clinical role", PARTLY, [DECISION]),
    (CLAIM, "42", "Reference to the full study protocol or technical details", PARTLY,
     "the kit's documentation and the methods paragraph of each section of this report"),
    (CLAIM, "43", "Availability of software, trained model and data", PARTLY,
     "the code is this kit; the data's availability is the provider's"),
    (CLAIM, "44", "Sources of funding and role of funders", NOT_FROM_RUN, STUDY),
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
