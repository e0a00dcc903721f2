"""Maintenance commands for the repository's generated files (not shipped in the package)."""
