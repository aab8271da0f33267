"""The build graph: nodes, keys, the content-addressed store, the scheduler, gc.

This package knows nothing of VMs, libvirt or click.
"""
