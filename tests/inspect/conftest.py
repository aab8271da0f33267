"""A real graph (file:// image, every recipe but the guest-booting ones) built into a real
store, with aivm's CLI in-process: the world of tests/cli/test_surface.py (VM `box` on
image `tiny` and network `lab`, state under ~/state), built."""

from __future__ import annotations

import pytest

from tests.cli.test_surface import World, tiny_image, world

__all__ = ["World", "tiny_image", "world"]


@pytest.fixture
def built(world: World) -> World:
    world.write(firewall=True)  # the nft-ruleset node too
    result = world.aivm("build")
    assert result.exit_code == 0, result.output
    return world
