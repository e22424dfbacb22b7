"""The study as a user runs it: one function per notebook section (`steps`), a profile's data prepared for
training or scoring (`prepare`), the papermill pipeline (`pipeline`), objects a notebook leaves to explore
(`explore`), the benchmarks (`bench`, `timings`, `kernels`), and one module per `cem` verb (`commands/`).
May import: `core`, `pixels`, `data`, `synthetic`, `model`, `training`, `inference`, `results`.
"""
