"""load(): defaults inheritance, and one ConfigError with the right file:line per bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from aivm.config import checks, load
from aivm.config.schema import Accel, Access, AttachMode, Config, Vm
from aivm.errors import ConfigError
from tests.config.conftest import write

GOOD = """\
# a comment
schema_version = 1
active_vm = "dev"

[behavior]
yes_sudo = true

[defaults]
cpus = 3
memory_mib = 1024
packages = ["git", "curl"]

[[vms]]
name = "dev"
accel = "qemu"

[[vms]]
name = "big"
cpus = 4
network = "lab"

[[networks]]
name = "lab"
bridge = "virbr-lab"
subnet = "10.77.3.0/24"
gateway = "10.77.3.1"
dhcp_start = "10.77.3.100"
dhcp_end = "10.77.3.200"

[networks.firewall]
allow_tcp_ports = [22, 5432]

[[attachments]]
host_path = "/src/proj"
vm = "dev"
mode = "git"
access = "ro"
"""


def test_good_config_inherits_defaults(cfg_path: Path) -> None:
    cfg = load.load(write(cfg_path, GOOD))
    assert cfg.path == cfg_path
    assert cfg.behavior.yes_sudo is True
    dev, big = cfg.vms
    assert (dev.name, dev.cpus, dev.memory_mib, dev.accel) == ("dev", 3, 1024, Accel.QEMU)
    assert dev.packages == ("git", "curl")
    assert (big.cpus, big.memory_mib, big.network) == (4, 1024, "lab")
    assert big.user == Vm().user                       # untouched fields keep schema defaults
    assert cfg.networks[0].firewall.allow_tcp_ports == (22, 5432)
    att = cfg.attachments[0]
    assert (att.mode, att.access, att.guest_dst) == (AttachMode.GIT, Access.RO, "")


def test_empty_file_is_the_default_config(cfg_path: Path) -> None:
    assert load.load(write(cfg_path, "")) == Config(path=cfg_path)


def test_missing_file(cfg_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load.load(cfg_path)
    assert err.value.reason == "no-config"
    assert "aivm config init" in err.value.hint


# (file text, line the error must name, reason, a phrase of the message)
BAD = [
    ("[defaults]\ncpus = \n", 2, "toml-syntax", "TOML syntax error"),
    ('name = "a"\n[[vms]\n', 2, "toml-syntax", "TOML syntax error"),
    ('[[vms]]\nname = "a"\ncpus = "two"\n', 3, "wrong-type",
     "cpus must be an integer, not a string"),
    ('[behavior]\nyes_sudo = 1\n', 2, "wrong-type", "yes_sudo must be a boolean"),
    ('[defaults]\n\npackages = ["a", 3]\n', 3, "wrong-type",
     "packages[1] must be a string, not an integer"),
    ('[[vms]]\nname = "a"\naccel = "xen"\n', 3, "wrong-type", "'auto', 'kvm', 'qemu'"),
    ('vms = 3\n', 1, "wrong-type", "array of tables"),
    ('[[vms]]\nname = "a"\n\n[[vms]]\nname = "b"\ncpu = 2\n', 6, "unknown-key",
     "unknown key 'cpu' in vms"),
    ('colour = "red"\n', 1, "unknown-key", "unknown key 'colour' in the top level"),
    ('[[vms]]\nname = "a"\ncpus = 0\n', 3, "bad-value", "cpus must be at least 1, not 0"),
    ('[defaults]\nmemory_mib = 999999999\n', 2, "bad-value", "more than this host has"),
    ('[[vms]]\nname = "a"\nmemory_mib = 64\n', 3, "bad-value", "too small"),
    ('[[vms]]\nname = "a b"\n', 2, "bad-value", "bad name 'a b'"),
    ('[[vms]]\nname = "a"\nuser = "Root!"\n', 3, "bad-value", "bad user name"),
    ('[[vms]]\ncpus = 2\n', 1, "missing-key", "vms entry 0 has no 'name'"),
    ('[[networks]]\nname = "n"\nsubnet = "10.77.0.0/33"\n', 3, "bad-value", "not a CIDR"),
    ('[[networks]]\nname = "n"\nsubnet = "banana"\n', 3, "bad-value", "not a CIDR"),
    ('[[networks]]\nname = "n"\nsubnet = "10.77.0.5/24"\n', 3, "bad-value", "host bits"),
    ('[[networks]]\nname = "n"\nbridge = "virbr-much-too-long"\n', 3, "bad-value",
     "Linux allows 15"),
    ('[[networks]]\nname = "n"\nsubnet = "10.78.0.0/24"\ngateway = "10.77.0.1"\n'
     'dhcp_start = "10.78.0.10"\ndhcp_end = "10.78.0.20"\n', 4, "bad-value",
     "gateway 10.77.0.1 is not a host address of subnet 10.78.0.0/24"),
    ('[[networks]]\nname = "n"\ndhcp_start = "10.77.0.200"\ndhcp_end = "10.77.0.100"\n', 4,
     "bad-value", "comes before dhcp_start"),
    ('[[networks]]\nname = "n"\n[networks.firewall]\nallow_udp_ports = [53, 70000]\n', 4,
     "bad-value", "port 70000 is out of range"),
    ('[[images]]\nname = "i"\nsha256 = "xyz"\n', 3, "bad-value", "64 lowercase hex"),
    ('[[attachments]]\nhost_path = "rel/path"\nvm = "a"\n', 2, "bad-value", "not absolute"),
    ('[[attachments]]\nvm = "a"\n', 1, "missing-key", "has no 'host_path'"),
    ('schema_version = 9\n', 1, "newer-schema", "newer than this aivm"),
    ('[[vms]]\nname = "a"\n[[vms]]\nname = "a"\n', 4, "duplicate-name", "both have name 'a'"),
    ('[[networks]]\nname = "n1"\nbridge = "br1"\n\n[[networks]]\nname = "n2"\nbridge = "br2"\n'
     'subnet = "10.77.0.128/25"\ngateway = "10.77.0.129"\ndhcp_start = "10.77.0.140"\n'
     'dhcp_end = "10.77.0.150"\n', 8, "subnet-overlap", "overlaps 10.77.0.0/24"),
    ('[[vms]]\nname = "a"\nnetwork = "nowhere"\n', 3, "unknown-network", "is not defined"),
    ('[defaults]\nimage = "nothing"\n[[vms]]\nname = "a"\n', 2, "unknown-image",
     "is not defined"),
]


@pytest.mark.parametrize(("text", "line", "reason", "phrase"), BAD,
                         ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_names_file_and_line(cfg_path: Path, text: str, line: int, reason: str,
                                       phrase: str) -> None:
    write(cfg_path, text)
    with pytest.raises(ConfigError) as err:
        load.load(cfg_path)
    assert err.value.reason == reason
    assert err.value.message.startswith(f"{cfg_path}:{line}: "), err.value.message
    assert phrase in err.value.message
    assert err.value.hint
    assert cfg_path.read_text() == text                 # loading never touches the file


def test_first_problem_in_file_order_and_count(cfg_path: Path) -> None:
    write(cfg_path, '[[vms]]\nname = "a"\ncpus = 0\n\n[behavior]\nyes_sudo = "yes"\nbogus = 1\n')
    with pytest.raises(ConfigError) as err:
        load.load(cfg_path)
    assert err.value.message == (f"{cfg_path}:3: cpus must be at least 1, not 0 "
                                 "(and 2 more problems; see `aivm config lint`)")


def test_unknown_key_suggests_close_name(cfg_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load.load(write(cfg_path, "[defaults]\nmemroy_mib = 2048\n"))
    assert err.value.hint == "did you mean 'memory_mib'?"


def test_not_utf8(cfg_path: Path) -> None:
    cfg_path.write_bytes(b'# ok\n# ok\nname = "\xff"\n')
    with pytest.raises(ConfigError) as err:
        load.load(cfg_path)
    assert (err.value.reason, err.value.message) == (
        "toml-syntax", f"{cfg_path}:3: the file is not UTF-8 text")


def test_memory_limit_is_the_hosts_total(cfg_path: Path) -> None:
    total = checks.host_memory_mib()
    assert total > 256
    assert load.load(write(cfg_path, f"[defaults]\nmemory_mib = {total}\n")).defaults.memory_mib \
        == total
    with pytest.raises(ConfigError):
        load.load(write(cfg_path, f"[defaults]\nmemory_mib = {total + 1}\n"))


def test_loads_without_path_says_config() -> None:
    with pytest.raises(ConfigError) as err:
        load.loads("[[vms]]\nname = 'a'\ncpus = -1\n")
    assert err.value.message.startswith("<config>:3: ")


def test_load_path_does_not_import_tomlkit(cfg_path: Path) -> None:
    import subprocess
    import sys

    write(cfg_path, GOOD)
    code = ("import sys; from pathlib import Path; from aivm.config import load; "
            f"cfg = load.load(Path({str(cfg_path)!r})); load.resolve_vm(cfg); "
            "assert 'tomlkit' not in sys.modules, 'tomlkit imported'; print(cfg.vms[0].name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parents[2], check=True)
    assert out.stdout == "dev\n"
