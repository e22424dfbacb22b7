"""cemlib: a study kit for breast-cancer diagnosis from contrast-enhanced mammography (CEM).

It reproduces the multi-feature fusion network of Qian et al. (Eur Radiol 2023): one VGG16-BN shared
over the four views of an exam, fed low-energy (LE) and dual-energy subtracted (DES) images, fusing
left-right and CC-MLO features to call each breast benign or malignant.
"""

import os
import warnings

__version__ = "0.1.0"

# The kit's progress bars are tqdm's text bars, which need no ipywidgets. Modules that import tqdm.auto
# would otherwise warn in every notebook kernel that ipywidgets is missing, and then take the text bar.
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")

#: CPU kernel choices that give the same float results on every x86-64 machine. MKL takes another
#: matrix-multiply path on AMD than on Intel processors unless told to be conditionally bitwise
#: reproducible, and oneDNN's convolutions differ between AVX2 and AVX-512; both are read when torch first
#: uses them, so they are set when cemlib is imported (before any tensor operation). Set a variable
#: yourself to override it, or CEM_NATIVE_KERNELS=1 to leave all of them to the libraries.
PORTABLE_KERNELS = {"MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def use_portable_kernels(environ=os.environ) -> dict[str, str]:
    """Set PORTABLE_KERNELS in `environ` where not set already (unless CEM_NATIVE_KERNELS=1); the values."""
    if environ.get("CEM_NATIVE_KERNELS") == "1":
        return {}
    for name, value in PORTABLE_KERNELS.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in PORTABLE_KERNELS}


use_portable_kernels()
