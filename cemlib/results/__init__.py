"""Numbers and pictures from predictions: the statistics (`stats`: AUC and DeLong, binomial and bootstrap
CIs),
the paper's tables (`tables`), figures (`figures`), the run against the paper (`claims`) and against its
replicated reference (`check`), every table and figure of a run written as files (`build`), and the HTML/PDF
report (`report`). May import: `core`.
"""
