"""A package served to agents by the import hook in tests (Python 2 and 3 syntax)."""
from .sub.mod import double  # noqa: F401 - a relative import through a subpackage

ORIGIN = __file__


def where():
    """The module's __file__ as the agent sees it."""
    return ORIGIN


def resource():
    import pkgutil
    return pkgutil.get_data(__name__, 'data/resource.txt')


def fails(message):
    raise ValueError(message)  # the traceback must quote this line
