"""The agent: stdlib-only modules shipped as source to the remote interpreter.

Nothing here runs on the controller except in tests. Every module must run
unchanged on Python 2.7 and 3.6 - 3.13: no f-strings, no annotations, no
keyword-only arguments, no ``from __future__``. The bootstrap builder
(:mod:`chopsticks._bootstrap`) loads each module into the private package
``_chopsticks_agent`` on the remote, rewriting ``chopsticks.agent.`` imports.
"""
