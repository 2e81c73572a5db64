"""Typed experiment configuration (``schema``), named configs shipped with the package, and atomic writes.

The lowest layer: everything else may import it, it imports nothing of the library.
"""

from .schema import *  # noqa: F401,F403
from .schema import __all__  # noqa: F401
from .errors import OutputError, UserError, check_output_folder  # noqa: F401
