"""Sphinx configuration for the chopsticks documentation.

Build with ``python3 -m sphinx -W -b html docs docs/_build/html``. No network:
intersphinx is off, and the theme is the one Sphinx ships with.
"""
import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(DOCS))

import chopsticks  # noqa: E402 - after the path insert

project = 'chopsticks'
author = 'the chopsticks authors'
copyright = '2024, the chopsticks authors'
release = chopsticks.__version__
version = '.'.join(release.split('.')[:2])

extensions = ['sphinx.ext.autodoc']

root_doc = 'index'
exclude_patterns = ['_build', 'examples']
templates_path = []
html_theme = 'alabaster'
html_title = f'chopsticks {release}'

autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
# Show defaults as written (mode=0o644, not 420).
autodoc_preserve_defaults = True
autodoc_default_options = {'show-inheritance': True}
# Tunnel classes document their own constructor parameters in the class
# docstring; __init__ docstrings are not repeated.
autoclass_content = 'class'


def _indent_leading_literal_block(app, what, name, obj, options, lines):
    """Re-indent a literal block that follows a docstring's first line.

    Docstrings are dedented by the margin of the lines after the first one.
    When the first line ends with ``::`` and everything after it is the
    literal block (``GroupResult.summary``), the block loses its indentation
    and docutils finds no literal block: indent it back.
    """
    if (len(lines) > 2 and lines[0].rstrip().endswith('::') and not lines[1].strip()
            and lines[2].strip() and not lines[2][:1].isspace()):
        lines[2:] = ['    ' + line if line.strip() else line for line in lines[2:]]


def setup(app):
    app.connect('autodoc-process-docstring', _indent_leading_literal_block)
