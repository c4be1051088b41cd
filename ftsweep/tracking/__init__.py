"""The MLflow record: one run per trial, retried writes, redacted secrets, paged queries.

`record` (the contract: tags, metrics, params, TrialRun), `store` (URI, experiment, client),
`retry` (transient errors, backoff), `redact` (secrets in URIs), `queries` (paged searches).
"""
