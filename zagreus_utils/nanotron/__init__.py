"""nanotron: its config (rendering, schema) and its training logs."""
