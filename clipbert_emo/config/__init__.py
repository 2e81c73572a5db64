"""Typed experiment configuration (``schema``), read from YAML and overrides (``loading``), named configs shipped
with the package, the lists of names config keys accept (``choices``), renamed keys (``renamed``), and atomic
writes.

The lowest layer: everything else may import it, it imports nothing of the library.
"""

from . import loading, schema
from .choices import AGGREGATIONS, SEEK_MODES, TASK_KINDS, Registry  # noqa: F401
from .errors import OutputError, UserError, check_output_folder  # noqa: F401
from .renamed import renamed_keyword  # noqa: F401
from .loading import *  # noqa: F401,F403
from .schema import *  # noqa: F401,F403

__all__ = [*schema.__all__, *loading.__all__, "AGGREGATIONS", "SEEK_MODES", "TASK_KINDS", "Registry", "renamed_keyword"]
