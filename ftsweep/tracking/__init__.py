"""The MLflow record: one run per trial, retried writes, redacted secrets, paged queries."""
