"""The networks of Qian et al. (`networks`: the VGG16-BN view encoder, the image classifier and the fusion
heads) and their checkpoint files, each verified by its content (`checkpoints`). May import: `core`.
"""
