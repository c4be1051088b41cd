"""After a sweep: the adapters it produced (`listing`), and merging one into its base model
(`merge`)."""
