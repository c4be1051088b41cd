"""The report: reads MLflow only and turns a sweep's runs into a decision with its evidence."""
