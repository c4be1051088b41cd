"""The experiments-per-dollar report: what a sweep measured, read back from MLflow only, turned
into a decision with its evidence.

`write.write_report` turns one experiment's runs into `report.md`, `report.html` and PNG plots:
quality against cost with its Pareto front, LoRA/QLoRA as a percentage of full fine-tuning, the
vendor guide's cost table re-measured (and projected to a target GPU), the effect of each knob,
a recommendation with its evidence, and what the sweep cannot tell.

Runs trained and scored on different inputs are never compared (`inputs`: one report per set,
and an index). Every quality carries its 95% interval and comparisons are paired on per-example
scores where runs recorded them (`scores`, `evidence`, `ftsweep.data.intervals`): a difference
inside the noise is a tie, never a ranking.

The modules, from the bottom up: `runs` (runs read from MLflow), `inputs` (which runs may be
compared), `scores` (per-example scores fetched once per run), `evidence` (estimates with
intervals, paired comparisons), `methods` (what the report asks the method registry), `guide`
(the vendor guide's numbers), `costs`, `recommendation`, `analysis` (all of it computed once),
`claims` (verdicts with their evidence) and `sections*` (the wording), `render` (Markdown and
HTML), `plots*` (PNG files), `write` (the entry point). Importing this package loads none of
them.
"""
