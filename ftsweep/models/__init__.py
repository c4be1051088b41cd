"""Where base weights come from: built-in models prepared from packages, hub ids, local folders."""
