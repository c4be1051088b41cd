"""Operating ftsweep for a cluster: the MLflow tracking server over PostgreSQL."""
