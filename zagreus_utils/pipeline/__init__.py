"""The pipeline: stage discovery, the run plan and runner, the spec, manifests, paths and errors."""
