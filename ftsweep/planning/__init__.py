"""Before anything runs: prices, memory and time estimates, layouts that fit, calibration.

- `memory`: a model's shape, counted (parameters, adapters, activations, `Memory`).
- `cost`: time from FLOPs, dollars from device time, and the hardware catalog (conf/hardware).
- `settings`: what the plan sizes, from a config (`Workload`, `settings_for`, `adapter_of`).
- `option`: one way to run, estimated (`PlanOption`), and the cheapest per method.
- `plan`: the estimates (`estimate`, `plan`, `estimate_trial`, `check_fits`).
- `fit`: the estimates scaled by measured runs (`calibrate`).
- `table`: plan.json and the table `ftsweep plan` prints.

Each method's own memory and FLOP terms live with the method (`ftsweep.methods`).
"""
