"""Tests for the deploy files: container image, compose stack, Helm chart, manifests, systemd."""
