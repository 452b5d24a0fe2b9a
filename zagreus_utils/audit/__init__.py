"""The audit of the technical report's markdown against the kit."""
