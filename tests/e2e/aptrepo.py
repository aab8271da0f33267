"""A flat apt repository of real .deb files, for the provision test and bench."""

from __future__ import annotations

from pathlib import Path

from aivm.run import Cmd, run


def flat_repo(path: Path, packages: tuple[str, ...]) -> Path:
    """`packages` downloaded into `path` (which exists) from the host's configured mirror,
    with the Packages index apt reads from a flat repository; returns `path`."""
    run(Cmd.of("sh", "-c", f"cd {path} && apt-get download {' '.join(packages)}",
               meaning="download the packages from the host's configured mirror"),
        timeout=300)
    index = run(Cmd.of("sh", "-c", f"cd {path} && dpkg-scanpackages -m . /dev/null",
                       meaning="index the repository")).stdout
    (path / "Packages").write_text(index)
    return path
