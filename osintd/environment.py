"""``OSINTD_*`` environment variables: every long option of the command line, by name.

Owns: which environment variable stands for which option (``--foo-bar`` is
``OSINTD_FOO_BAR``), derived from the parser itself so that an option added
later has its variable at once, and how a variable's text becomes the option's
arguments (a switch's yes/no, a repeatable option's list).
Must not: know any particular option, parse values itself (the option's own
type function does, through the parser, so a variable is checked exactly like
the flag) or decide precedence (``cli`` does: flag, environment, file, default).

Variables that are empty count as unset, as if they were not there.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Literal

import attrs

PREFIX = "OSINTD_"
#: What a switch (``--demo``) accepts; anything else is refused naming the variable.
YES = frozenset({"1", "true", "yes", "on"})
NO = frozenset({"0", "false", "no", "off"})
#: A repeatable option's items are separated by commas, spaces, or both.
_SEPARATORS = re.compile(r"[,\s]+")


class BadValue(ValueError):
    """A variable whose text cannot be an option's arguments (a switch that is neither yes nor no)."""


@attrs.frozen
class Option:
    """One long option of the command line and the variable that stands for it."""

    flag: str  # --foo-bar
    dest: str  # foo_bar: the attribute the parser stores it under
    kind: Literal["switch", "list", "value"]
    #: A switch's value when it is on (store_true: True; store_false: False).
    on: object = True

    @property
    def variable(self) -> str:
        return PREFIX + self.flag.removeprefix("--").upper().replace("-", "_")

    def arguments(self, text: str) -> list[str] | bool:
        """The command-line arguments ``text`` stands for, or, for a switch, whether it is on."""
        if self.kind == "switch":
            word = text.strip().lower()
            if word not in YES | NO:
                raise BadValue(f"{text!r} is neither true nor false "
                               f"(use one of {', '.join(sorted(YES | NO))})")
            return word in YES
        if self.kind == "list":
            return [f"{self.flag}={item}" for item in _SEPARATORS.split(text.strip()) if item]
        # --flag=value, not --flag value: a value starting with "-" is not taken for an option.
        return [f"{self.flag}={text}"]


def options(parser: argparse.ArgumentParser) -> list[Option]:
    """Every long option of ``parser`` but --help and --version, in the parser's order.

    An action of a kind this module does not know how to fill from text raises
    TypeError: a new kind of option must be given a mapping here (the tests
    build every option's variable, so they fail first)."""
    found = []
    for action in parser._actions:  # argparse offers no public list of its options
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        flag = next((name for name in action.option_strings if name.startswith("--")), None)
        if flag is None:
            continue
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            found.append(Option(flag, action.dest, "switch", action.const))
        elif isinstance(action, argparse._AppendAction):
            found.append(Option(flag, action.dest, "list"))
        elif type(action) is argparse._StoreAction and action.nargs is None:
            found.append(Option(flag, action.dest, "value"))
        else:
            raise TypeError(f"{flag}: no OSINTD_* mapping for a {type(action).__name__} (see osintd/environment.py)")
    return found


def present(option: Option, environ: Mapping[str, str]) -> str | None:
    """The text of ``option``'s variable, or None when it is unset or empty."""
    text = environ.get(option.variable)
    return text if text and text.strip() else None


def unknown(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> list[str]:
    """``OSINTD_*`` variables that stand for no option (a typo, or an option removed): worth a warning."""
    known = {option.variable for option in options(parser)}
    return sorted(name for name in environ if name.startswith(PREFIX) and name not in known)
