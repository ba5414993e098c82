"""The import hook: the agent imports your own modules from the controller."""
import os
import sys
import tempfile

from chopsticks.tunnel import Local

# A small package that exists only on the controller.
root = tempfile.mkdtemp()
package = os.path.join(root, 'inventory')
os.mkdir(package)
with open(os.path.join(package, '__init__.py'), 'w') as f:
    f.write(
        'import pkgutil\n'
        'from .roles import role_of\n'
        '\n'
        'def describe(name):\n'
        '    template = pkgutil.get_data(__name__, "template.txt").decode()\n'
        '    return template.format(name=name, role=role_of(name))\n')
with open(os.path.join(package, 'roles.py'), 'w') as f:
    f.write('def role_of(name):\n'
            '    return "database" if name.startswith("db") else "web"\n')
with open(os.path.join(package, 'template.txt'), 'w') as f:
    f.write('{name} is a {role} server')

sys.path.insert(0, root)
import inventory  # noqa: E402

with Local('db1') as tun:
    # `inventory` is not on the agent's disk: its modules and its data file
    # are served by the controller when the agent imports them.
    print(tun.call(inventory.describe, 'db1'))     # db1 is a database server
