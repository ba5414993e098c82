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
