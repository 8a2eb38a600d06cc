"""Typed job options <-> command-line flags, written once.

Each job's options are a frozen dataclass whose fields carry their flag's help
(``option(...)``); ``build_parser`` derives the argparse parser from it and
``from_namespace`` the options object, so a default or a help text exists in
exactly one place and the manifest is ``to_dict(options)``. Validation lives in
each dataclass's ``__post_init__`` (raising ``OptionsError``).

``FlagParser`` is the one parser class of every subcommand: no abbreviations
(``--eval`` must never silently mean ``--eval-fraction``, nor a Beam flag be
taken for a prefix of ours), and unknown flags stop with one line that names
the flag and the closest valid one, exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
import typing
from typing import Any, Callable, Iterable, NoReturn, TypeVar

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, *, help: str, choices: tuple[str, ...] | None = None,
           parse: Callable[[str], Any] | None = None, metavar: str | None = None, cli: bool = True) -> Any:
    """A dataclass field with its flag's help.

    ``parse`` turns the flag's text into the field's value (e.g. a comma list);
    ``cli=False`` keeps a field off the command line (set by the job itself).
    Tuple fields without ``parse`` are repeatable flags. No default: required.
    """
    metadata = {"help": help, "choices": choices, "parse": parse, "metavar": metavar, "cli": cli}
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(field: dataclasses.Field) -> str:
    return "--" + field.name.replace("_", "-")


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields that are flags, the class's own first, inherited (shared) ones last."""
    own = cls.__dict__.get("__annotations__", {})
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("cli", False)]
    return sorted(fields, key=lambda f: f.name not in own)


def _is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type) -> None:
    """One ``--flag`` per CLI field of ``cls``, with the field's default, type and help."""
    hints = typing.get_type_hints(cls)
    for f in cli_fields(cls):
        kind, md = hints[f.name], f.metadata
        required = _is_required(f)
        default = None if required else f.default
        shown = "" if required or default in (None, False, (), "") else " (default: %(default)s)"
        kwargs: dict[str, Any] = {"dest": f.name, "help": md["help"] + shown}
        if md["metavar"]:
            kwargs["metavar"] = md["metavar"]
        if kind is bool:
            kwargs.update(action="store_true", default=bool(default))
        elif md["parse"] is not None:
            kwargs.update(type=md["parse"], default=default, required=required)
        elif typing.get_origin(kind) is tuple:
            kwargs.update(action="append", type=typing.get_args(kind)[0], default=None, required=required)
            if default:
                kwargs["help"] += f" (default: {' '.join(map(str, default))})"
            kwargs["help"] += " (repeatable)"
        else:
            scalar = [t for t in typing.get_args(kind) if t is not type(None)] or [kind]
            kwargs.update(type=scalar[0], default=default, required=required, choices=md["choices"])
        parser.add_argument(flag_name(f), **kwargs)


def from_namespace(cls: type[T], ns: argparse.Namespace, **extra: Any) -> T:
    """The options object from parsed flags (``extra``: the non-CLI fields)."""
    values = {}
    for f in cli_fields(cls):
        value = getattr(ns, f.name)
        if isinstance(value, list):
            value = tuple(value)
        if value is None and not _is_required(f):
            value = f.default
        values[f.name] = value
    return cls(**values, **extra)


def to_dict(options: Any) -> dict[str, Any]:
    """Every field of an options dataclass as plain JSON values, for manifests and config.json."""
    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {k: plain(v) for k, v in dataclasses.asdict(options).items()}


def closest_flag(name: str, candidates: Iterable[str]) -> str | None:
    """The valid flag nearest to ``name``; dashes and underscores count as the same letter."""
    def norm(flag: str) -> str:
        return flag.lstrip("-").lower().replace("_", "-")

    by_norm: dict[str, str] = {}
    for c in candidates:
        if c.startswith("--"):
            by_norm.setdefault(norm(c), c)
    match = difflib.get_close_matches(norm(name), list(by_norm), n=1, cutoff=0.6)
    return by_norm[match[0]] if match else None


class FlagParser(argparse.ArgumentParser):
    """argparse with one-line errors, no abbreviations and "did you mean" for unknown flags."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def flags(self) -> list[str]:
        return [s for action in self._actions for s in action.option_strings]

    def error(self, message: str) -> NoReturn:
        """One line on stderr, exit 2 (argparse's code for usage errors)."""
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)

    def parse_args(self, args: list[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        ns, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.reject_unknown(unknown)
        return ns

    def reject_unknown(self, unknown: list[str], also_valid: Iterable[str] = ()) -> NoReturn:
        """Stops on the first unknown argument, suggesting the nearest of our flags or ``also_valid``."""
        flags = [a for a in unknown if a.startswith("-")]
        if not flags:
            self.error(f"unexpected argument {unknown[0]!r}")
        name = flags[0].split("=", 1)[0]
        guess = closest_flag(name, [*self.flags(), *also_valid])
        self.error(f"unknown flag {name}" + (f" (did you mean {guess}?)" if guess else "")
                   + f"; see {self.prog} --help")


def build_parser(cls: type, prog: str, description: str, epilog: str | None = None,
                 formatter_class: type = argparse.HelpFormatter) -> FlagParser:
    """The parser of a job whose every flag is a field of ``cls``."""
    parser = FlagParser(prog=prog, description=description, epilog=epilog, formatter_class=formatter_class)
    add_flags(parser, cls)
    return parser
