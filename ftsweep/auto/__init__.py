"""`ftsweep auto`: give it a model, data, hardware and a budget; it designs the cheapest sweep
that settles LoRA vs QLoRA vs full fine-tuning for them, runs it, and hands back the winner.

- `profile`: what the data is (examples, tokens, reply lengths, task kind);
- `learning_rates`: each method's rate ladder, centred on a documented heuristic;
- `estimate`: a trial's rough price before anything ran (sizes the design only);
- `design`: data + plan + budget -> the search space, and why anything was left out;
- `sweep_file`: the design as RESULTS/auto/sweep.yaml, an ordinary sweep;
- `stopping`: when the confirm stage has settled the choice;
- `stages`: search (ASHA), widen past an edge, confirm (more seeds), each an ordinary sweep;
- `finish`: the report and the winner merged;
- `command`: `cmd_auto`, what the CLI calls.
"""
