"""Pixels in, model input out: the grey-level window (`window`), DICOM header values checked against their
pixels (`headercheck`), the size cap held before a file is inflated or decoded (`sizecap`), reading
DICOM/JPEG and the study's preprocessing (crop, orientation, window, resize; `imaging`), the CC/MLO
geometry an image shows (`geometry`: the pectoral muscle's corner), and the quality-control figure of raw
against preprocessed views (`qc`). May import: `core`.
"""
