"""Inspecting the store the way Nix users do: path-info, why-depends, build logs,
rebuild checks. Nothing here is on the no-op build path."""
