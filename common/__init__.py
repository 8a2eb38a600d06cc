"""What every layer shares: user-facing errors, typed flags, logging set-up and artifact names.

The bottom layer: it imports no other ctrflow layer.
"""
from typing import TYPE_CHECKING

from ctrflow.common.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from ctrflow.common.errors import CheckFailed, ExitCode, OptionsError, UserError, user_error_codes
    from ctrflow.common.flags import FlagParser, add_flags, build_parser, from_namespace, option, to_dict
    from ctrflow.common.logs import setup_logging

__all__ = ["CheckFailed", "ExitCode", "OptionsError", "UserError", "user_error_codes",
           "FlagParser", "add_flags", "build_parser", "from_namespace", "option", "to_dict",
           "setup_logging"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "errors": ("CheckFailed", "ExitCode", "OptionsError", "UserError", "user_error_codes"),
    "flags": ("FlagParser", "add_flags", "build_parser", "from_namespace", "option", "to_dict"),
    "logs": ("setup_logging",),
})
