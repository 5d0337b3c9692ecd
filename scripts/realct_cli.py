"""The command line both real-CT checks of issue #18 share (``s4c_real_ct.py``, ``smalllesion_real_ct.py``):
``--model``, ``--data``, ``--json``, ``--markdown``, ``--case TEXT`` (repeatable), ``--seed``; checks that the
shared real-data folder holds the TotalSegmentator example, runs, prints and writes the table."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Optional


def main(doc: str, method: str, run: Callable[[Optional[Path], Path, list[str], int], dict],
         markdown: Callable[[dict], str], argv: Optional[list[str]] = None) -> int:
    """Parse ``argv``, call ``run(model, data, only, seed)`` and print / write ``markdown(rows)``; 2 when the
    data folder lacks ``totalseg-example-ct/example_ct.nii.gz``."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--model", type=Path, help=f"{method} model folder (default: the shipped model)")
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data",
                   help="the shared real-data folder (default ../shared/data)")
    p.add_argument("--json", type=Path, help="write the rows as JSON here")
    p.add_argument("--markdown", type=Path, help="write the table here")
    p.add_argument("--case", action="append", default=[], metavar="TEXT",
                   help="only the cases whose name contains TEXT (repeatable; default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of inserted lesions, where the check draws any")
    args = p.parse_args(argv)
    if not (args.data / "totalseg-example-ct" / "example_ct.nii.gz").exists():
        print(f"error: {args.data}/totalseg-example-ct/example_ct.nii.gz not found (give --data)", file=sys.stderr)
        return 2
    rows = run(args.model, args.data, args.case, args.seed)
    text = markdown(rows)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    return 0
