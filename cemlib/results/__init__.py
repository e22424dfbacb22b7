"""Numbers and pictures from predictions: the statistics (`stats`: AUC and DeLong, binomial and bootstrap
CIs),
the paper's tables (`tables`), figures (`figures`), the run against the paper (`claims`) and against its
replicated reference (`check`), every table and figure of a run written as files (`build`), the HTML/PDF
report (`report`: its notebook sections in `sections`, its tables as shown in `presentation`, its
sentences written from the run's numbers in `narrative`, read back from the run's files in `runfacts`),
and the evaluation a radiology journal asks for: calibration (`calibration`), operating
points and decision curves (`decision`), clustered AUCs (`clustered`), their tables (`evaluation`) and
figures (`evaluation_figures`), and the CLAIM and TRIPOD+AI checklists (`checklist`). May import: `core`.
"""
