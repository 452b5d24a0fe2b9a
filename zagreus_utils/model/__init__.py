"""The model: parameter and compute planning, the local trainer, pre-flight checks."""
