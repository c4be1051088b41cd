"""One trial, for one process or a group of N workers: train, evaluate, measure, record."""
