"""A trained model applied: a checkpoint made ready to score (`predict`), the per-breast and per-image scores
of a manifest (`scoring`), one exam folder scored and reported (`exam`), and Grad-CAM++ maps with the
pointing game (`cams`). Inference never imports training. May import: `core`, `pixels`, `data`, `model`.
"""
