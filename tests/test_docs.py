"""The documentation builds without a warning, and its examples run.

Every runnable example of the docs is a script in ``docs/examples/``, shown by
a ``literalinclude``; each runs here against Local tunnels, as a user would
run it: a separate process, from a scratch directory, with a deadline.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / 'docs'
EXAMPLES = sorted((DOCS / 'examples').glob('*.py'))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    return env


def test_sphinx_build_has_no_warnings(tmp_path):
    if importlib.util.find_spec('sphinx') is None:
        reason = "sphinx is not installed (pip install -e '.[test]'): docs build not checked"
        print(reason)
        pytest.skip(reason)
    out = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html',
         str(DOCS), str(tmp_path / 'html')],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=_env())
    assert out.returncode == 0, f'sphinx failed:\n{out.stdout}\n{out.stderr}'
    assert (tmp_path / 'html' / 'index.html').exists()


def test_every_example_is_shown_in_the_docs():
    assert EXAMPLES, 'docs/examples/ holds no example'
    included = set()
    for page in DOCS.rglob('*.rst'):
        for target in re.findall(r'^\.\. literalinclude:: (\S+)', page.read_text(), re.M):
            included.add((page.parent / target).resolve())
    missing = [p.name for p in EXAMPLES if p.resolve() not in included]
    assert not missing, f'examples not included by any page: {missing}'


@pytest.mark.parametrize('example', EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(example, tmp_path):
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env=_env())
    assert out.returncode == 0, f'{example.name} failed:\n{out.stdout}\n{out.stderr}'
    assert out.stdout.strip(), f'{example.name} printed nothing'
    assert 'Traceback' not in out.stderr, out.stderr
