"""VMs on another machine: the ssh connection to it, its facts, its store (issue #17)."""
