"""cemlib: a study kit for breast-cancer diagnosis from contrast-enhanced mammography (CEM).

It reproduces the multi-feature fusion network of Qian et al. (Eur Radiol 2023): one VGG16-BN shared
over the four views of an exam, fed low-energy (LE) and dual-energy subtracted (DES) images, fusing
left-right and CC-MLO features to call each breast benign or malignant.
"""

__version__ = "0.1.0"
