"""Print the size of the bootstrap: the stage-1 line and the compressed stage 2.

    python bench/bootstrap_size.py
"""
from __future__ import annotations

import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chopsticks import _bootstrap  # noqa: E402


def main() -> None:
    stage2 = _bootstrap.stage2()
    raw = zlib.decompress(stage2)
    print(f'stage 1 (python -c line): {len(_bootstrap.stage1())} bytes')
    print(f'stage 2 compressed:       {len(stage2)} bytes ({len(stage2) / 1024:.2f} KiB)')
    print(f'stage 2 source:           {len(raw)} bytes in '
          f'{len(_bootstrap.AGENT_MODULES)} modules')
    for name, source in _bootstrap.agent_sources():
        print(f'  {name:<10} {len(source):>6} bytes stripped, '
              f'{len(zlib.compress(source.encode(), 9)):>5} compressed alone')


if __name__ == '__main__':
    main()
