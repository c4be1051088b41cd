"""After a sweep: the adapters it produced, and merging one into its base model."""
