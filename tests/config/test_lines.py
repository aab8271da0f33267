"""The key -> line scan used for error messages."""

from __future__ import annotations

from aivm.config.lines import key_lines, line_of

TEXT = '''\
# comment with key = value inside
top = 1
[defaults]
packages = [
  "a",        # cpus = 1 inside an array is not a key
  "b",
]
note = """
name = "not a key"
"""
cpus = 2

[[vms]]
name = "a"
[[vms]]
"name" = "b"
memory_mib = 1   # [[vms]] in a comment
[[networks]]
name = "n"
[networks.firewall]
allow_tcp_ports = [1, 2]
dotted.key = 3
'''


def test_key_lines() -> None:
    lines = key_lines(TEXT)
    assert lines[("top",)] == 2
    assert lines[("defaults",)] == 3
    assert lines[("defaults", "packages")] == 4
    assert lines[("defaults", "note")] == 8
    assert lines[("defaults", "cpus")] == 11
    assert lines[("vms", 0)] == 13
    assert lines[("vms", 1, "name")] == 16
    assert lines[("vms", 1, "memory_mib")] == 17
    assert lines[("networks", 0, "firewall", "allow_tcp_ports")] == 21
    assert lines[("networks", 0, "firewall", "dotted", "key")] == 22
    assert ("defaults", "name") not in lines and ("name",) not in lines


def test_line_of_falls_back_to_ancestors() -> None:
    assert line_of(TEXT, ("defaults", "packages", 1)) == 4
    assert line_of(TEXT, ("vms", 1, "cpus")) == 15
    assert line_of(TEXT, ("nothing", "here")) == 1
