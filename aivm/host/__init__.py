"""The host aivm runs on: health checks, packages, networks by name."""
