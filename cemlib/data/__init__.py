"""Datasets as the study reads them: the manifest, the contract between steps (`manifest`); the source
adapters, each reading one on-disk layout into a manifest and answering for its own file names (`sources/`);
the preprocessed tensor cache and its file format (`cache`, `tensorfile`); the torch datasets over it
(`datasets`). Reading a dataset never writes one. May import: `core`, `pixels`.
"""
