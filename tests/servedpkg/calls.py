"""Functions the tests call on agents of every Python (2.7 syntax on purpose).

Test modules themselves are Python 3 only, so what runs remotely lives here.
"""


def served_call():
    import tests.servedpkg
    from tests.servedpkg.sub import helper
    return tests.servedpkg.double(4), helper.twice(u'ab'), tests.servedpkg.resource()


def raise_in_served():
    import tests.servedpkg
    tests.servedpkg.fails('boom')
