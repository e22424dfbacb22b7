"""Synthetic data: the CEM phantom, the internal cohort and the replicas of the external releases.

The only code in cemlib that writes datasets. It may read the constants and readers of `cemlib.data.sources`
(file names, folder names, table columns) so that what it writes is what the adapters read; the
adapters never import it. May import: `core`, `pixels`, `data`.

    CARD.md      the phantom's card: every parameter that shapes what a classifier can learn, its source
    lesions.py   findings and their descriptors, drawn from published frequencies
    cohort.py    patients with the paper's cohort statistics (Tables 1 and 2); populations of the replicas
    anatomy.py   outline, nipple, skin, pectoral muscle, glands oriented to the nipple, vessels
    findings.py  masses, calcification clusters, non-mass enhancement and asymmetries in pixels
    phantom.py   one patient specification in, eight images and lesion masks out; detectors
    ge.py        the internal cohort in the GE DICOM layout, labels.csv, lesions.csv, lesion_views.csv
    cddcesm.py   the CDD-CESM release replica (8-bit JPEGs, workbook, VIA CSV, lesions.csv)
    inbreast.py  the INbreast release replica (14-bit FFDM DICOMs, XML ROIs, CSV, xls, lesions.csv)
    writer.py    the one parallel patient writer and the output-folder rules
    qc.py        the QC sheet and intensity histograms across datasets
"""

from __future__ import annotations

from cemlib.synthetic.cohort import DEFAULT_PATIENTS, sample_cohort, sample_patient
from cemlib.synthetic.ge import check_generated, dicom_bytes, write_cohort, write_patient
from cemlib.synthetic.phantom import Exam, PatientSpec, grid_shape, pixel_spacing, render_exam
from cemlib.synthetic.writer import GENERATOR_VERSION, interrupted

__all__ = ["DEFAULT_PATIENTS", "GENERATOR_VERSION", "Exam", "PatientSpec",
           "check_generated", "dicom_bytes", "grid_shape", "interrupted",
           "pixel_spacing",
           "render_exam", "sample_cohort", "sample_patient", "write_cohort", "write_patient"]
