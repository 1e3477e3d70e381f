"""The configuration: its types, the YAML reader, loading and printing it."""
