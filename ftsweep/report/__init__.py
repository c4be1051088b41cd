"""The experiments-per-dollar report: what a sweep measured, read back from MLflow only, turned
into a decision with its evidence.

`write.write_report` turns one experiment's runs into `report.md`, `report.html` and PNG plots:
quality against cost with its Pareto front, LoRA/QLoRA as a percentage of full fine-tuning, the
vendor guide's cost table re-measured (and projected to a target GPU), the effect of each knob,
a recommendation with its evidence, and what the sweep cannot tell.

The modules, from the bottom up: `runs` (runs read from MLflow), `methods` (what the report asks
the method registry), `guide` (the vendor guide's numbers), `recommendation`, `costs`,
`analysis` (all of it computed once), `claims` and `sections*` (the wording), `render` (Markdown
and HTML), `plots*` (PNG files), `write` (the entry point). Importing this package loads none
of them.
"""
