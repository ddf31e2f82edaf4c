"""relaytrain's training runtime.

Importing this package (or `spec`, `presets`, `store`) must never import torch, aws-cdk-lib
or pulumi: the kit reads presets and specs without paying for torch, and workers install the
runtime alone.
"""

__version__ = "0.1.0"


class RelayError(Exception):
    """An error with one clear line for the user: what is wrong, where, and the fix.

    The CLI prints `str(err)` on one line and exits non-zero, never a traceback.
    """

    exit_code = 2
