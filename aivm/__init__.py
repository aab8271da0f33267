"""aivm: local libvirt sandbox VMs for coding agents, built from a content-addressed graph."""

__version__ = "0.5.0.dev0"
