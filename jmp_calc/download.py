"""Pre-fetch registry models into the Hugging Face cache (for login nodes and air-gapped clusters).

    python -m jmp_calc.download jmp-s-md22 jmp-l-md22
    python -m jmp_calc.download --list

Then copy the cache directory (HF_HOME, default ~/.cache/huggingface) to the offline machine and set
HF_HUB_OFFLINE=1 there.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from .io.hub import ModelNotAvailableError, fetch
    from .io.registry import UnknownModelError, get_entry, list_models
    from .io.safe_load import CheckpointError

    ap = argparse.ArgumentParser(prog="python -m jmp_calc.download", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="registry names")
    ap.add_argument("--list", action="store_true", help="print the registry and exit")
    ap.add_argument("--cache-dir", default=None, help="Hugging Face cache directory (default: HF_HUB_CACHE)")
    args = ap.parse_args(argv)
    if args.list or not args.names:
        list_models()
        return 0
    failed = 0
    for name in args.names:
        try:
            entry = get_entry(name)
            if entry.source == "embedded":
                print(f"{name}: shipped inside the package, nothing to download")
                continue
            path = fetch(entry, cache_dir=args.cache_dir)
            print(f"{name}: {path}")
        except (UnknownModelError, ModelNotAvailableError, CheckpointError) as exc:
            print(f"{name}: ERROR: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
