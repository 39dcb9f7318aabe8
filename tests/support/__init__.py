"""Provisioning test kit: local conda channel, conda-lock files, micromamba double, wheels."""
