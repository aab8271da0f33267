"""Benchmarks: aivm against the tools users would pick instead, on one guest image.

`make bench` runs `python -m bench` (the table and aivm's own measurements).
`bench.image` builds the shared guest image and the peers' seed through aivm's
own recipes; `bench.peers` times virt-install and Vagrant on it, each inside a
private libvirt stack (tests/e2e/harness.py). Not part of `make test`.
"""
