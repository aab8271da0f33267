"""Activation: turn store paths into live libvirt objects, with previewed, approved steps."""
