"""The study's vocabulary and plumbing, used by every stage: the names of views, sides, energies, inputs,
fusions and models (`views`, `vocab`); the typed, frozen settings tree read from a profile (`settings`),
and the own folders of a run whose settings differ from its profile (`variants`); atomic file writes and
checksums (`fileio`); where the kit's own files are (`resources`); output-location checks (`outputs`); the
machine and software of a run (`environment`); torch devices, seeds and the process group (`devices`);
worker processes (`processes`); the progress of long loops (`progress`).
May import: nothing of cemlib but its version.
"""
