"""Typed settings -> CLI flags, Slicer descriptions and dicts (issue #16)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from lesionseg.errors import InputError
from lesionseg.options import Options, option


@dataclass(frozen=True)
class Demo(Options):
    stride: Optional[int] = option(None, "window stride", unit="voxels")
    prior_sd: float = option(50.0, "prior SD", unit="HU")
    roi: Optional[tuple[float, float, float, float, float, float]] = option(None, "region", metavar=("X0", "Y0", "Z0",
                                                                                                   "X1", "Y1", "Z1"))
    mode: str = option("l2snet", "row", choices=("l2snet", "2d", "3d"))
    adaptive: bool = option(True, "adaptive threshold")
    verbose_table: bool = option(False, "more columns")
    table: Optional[Path] = option(None, "prior table", flag="--prior-table", slicer=False)

    def __post_init__(self) -> None:
        if not 0 < self.prior_sd <= 1000:
            raise InputError(f"{self.flag('prior_sd')} must be in (0, 1000], got {self.prior_sd}")


def parse(*argv):
    parser = argparse.ArgumentParser()
    Demo.add_arguments(parser)
    return Demo.from_namespace(parser.parse_args(list(argv)))


def test_flags_round_trip():
    assert parse() == Demo()
    got = parse("--stride", "20", "--prior-sd", "30", "--roi", "1", "2", "3", "4", "5", "6", "--mode", "2d",
                "--no-adaptive", "--verbose-table", "--prior-table", "p.json")
    assert got == Demo(20, 30.0, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0), "2d", False, True, Path("p.json"))
    assert Demo.from_dict(got.to_dict()) == got and got.to_dict()["roi"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    with pytest.raises(InputError, match="--prior-sd must be in"):
        parse("--prior-sd", "1e9")
    with pytest.raises(InputError, match="unknown setting"):
        Demo.from_dict({"strid": 3})
    with pytest.raises(InputError, match="--roi takes 6 numbers"):
        Demo.from_dict({"roi": [1, 2]})


def test_describe_for_slicer():
    rows = {r["name"]: r for r in Demo.describe()}
    assert rows["stride"] == {"name": "stride", "flag": "--stride", "type": "int?", "default": None,
                              "help": "window stride", "choices": None, "unit": "voxels", "slicer": True,
                              "advanced": False}
    assert rows["roi"]["type"] == "float[6]?" and rows["mode"]["choices"] == ["l2snet", "2d", "3d"]
    assert rows["table"]["flag"] == "--prior-table" and rows["table"]["slicer"] is False
    assert rows["adaptive"]["type"] == "bool" and rows["adaptive"]["default"] is True
