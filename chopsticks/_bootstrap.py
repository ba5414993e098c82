"""Builds what starts an agent: the stage-1 command line and the stage-2 blob.

Stage 1 is one short ``python -c`` line that reads exactly N bytes of stage 2
from stdin and executes them. Stage 2 is the zlib-compressed source of a small
loader plus every module of :mod:`chopsticks.agent`, comments and docstrings
stripped. It is built once per controller process: nothing per host goes
into it (the host name follows in a CONFIG frame).
"""
from __future__ import annotations

import ast
import functools
import io
import tokenize
import zlib
from pathlib import Path

AGENT_DIR = Path(__file__).parent / 'agent'
# Load order: each module's imports come before it.
AGENT_MODULES = ('_compat', '_wire', '_codec', '_importer', '_calls', '_files', '_main')
PACKAGE = '_chopsticks_agent'

LOADER = '''import sys,types
p=types.ModuleType(%(pkg)r);p.__path__=[];sys.modules[%(pkg)r]=p
for n,s in %(modules)r:
 m=types.ModuleType(%(pkg)r+'.'+n);m.__file__='<chopsticks-agent/%%s.py>'%%n
 sys.modules[m.__name__]=m;setattr(p,n,m)
 exec(compile(s,m.__file__,'exec'),m.__dict__)
sys.modules[%(pkg)r+'._main'].main(f)
'''

# Python 2 has no -I; -E (ignore PYTHON* variables) and -S (no site) cover
# what matters and save the site import on every start.
INTERPRETER_FLAGS = ('-E', '-S')


def strip_source(source: str) -> str:
    """Drop docstrings, comments, blank lines and most indentation: fewer bytes to ship.

    The agent's sources use four-space indentation (the tests compile the
    result on every interpreter).
    """
    tree = ast.parse(source)
    drop: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, 'body', None)
        if not isinstance(body, list) or len(body) < 2:
            continue
        first = body[0]
        if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)):
            drop.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    comments = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.line.strip().startswith('#'):
            comments.add(tok.start[0])
    protected: set[int] = set()  # lines inside a multi-line string keep their spaces
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING and tok.start[0] != tok.end[0]:
            protected.update(range(tok.start[0] + 1, tok.end[0] + 1))
    lines = []
    for number, line in enumerate(source.splitlines(), 1):
        if number in drop or number in comments or not line.strip():
            continue
        if number not in protected:
            # One space per indentation level; continuation lines (inside
            # brackets) may be indented anyhow.
            code = line.lstrip(' ')
            depth = len(line) - len(code)
            line = ' ' * (depth // 4) + code if depth % 4 == 0 else ' ' + code
        lines.append(line)
    return '\n'.join(lines) + '\n'


def agent_sources() -> list[tuple[str, str]]:
    """The agent modules as (name, source) with imports pointed at the private package."""
    modules = []
    for name in AGENT_MODULES:
        source = (AGENT_DIR / f'{name}.py').read_text('ascii')
        source = strip_source(source).replace('chopsticks.agent', PACKAGE)
        modules.append((name, source))
    return modules


@functools.lru_cache(maxsize=1)
def stage2() -> bytes:
    """The compressed stage 2, built once per process."""
    source = LOADER % {'pkg': PACKAGE, 'modules': agent_sources()}
    return zlib.compress(source.encode('ascii'), 9)


def stage1() -> str:
    """The ``-c`` program: read exactly len(stage2) bytes, inflate, run."""
    return ("import os,zlib;f=os.fdopen(os.dup(0),'rb');"
            "exec(zlib.decompress(f.read(%d)))" % len(stage2()))


def agent_argv(python: str) -> list[str]:
    """The argv that starts an agent with ``python``."""
    return [python, *INTERPRETER_FLAGS, '-c', stage1()]
