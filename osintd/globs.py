"""Repository globs of subscriptions: their syntax, their limits, and matching whose
cost is bounded by what it reads.

Owns: what a glob may be — ``*`` any run of characters, ``?`` one character, every
other character itself; at most ``MAX_GLOBS`` globs of at most ``MAX_GLOB_LENGTH``
characters — and matching one against a repository name.
Must not: know about clients or frames (``broadcaster.Filter`` keeps the compiled
globs of one subscription and remembers their answers per repository).

Why not ``fnmatch``: ``fnmatch.translate`` is quadratic in unclosed ``[`` (15,000 of
them froze the event loop for 10 s), its bracket classes mean nothing in repository
names (letters, digits, ``-``, ``_``, ``.`` and one ``/``), and a regular expression
of many ``*`` can backtrack.  Here a glob is split at its stars into segments; the first
must start the name, the last must end it, and each one between is found at its leftmost
place after the previous one (which is right: any match can be moved there).  Each
segment is a search the ``re`` engine does without backtracking into another segment,
so a match costs at most (segments × name length) steps, and a name's answer is
remembered by the subscription's ``Filter``.
"""

from __future__ import annotations

import re

import attrs

#: Globs in one subscription, and characters in one glob: a client's filter costs at most
#: MAX_GLOBS matches the first time a repository is seen, then one dictionary lookup.
MAX_GLOBS = 100
MAX_GLOB_LENGTH = 200


class GlobError(ValueError):
    """A subscription's globs are over a limit; the message says which and what to do."""


def check(globs: list[str] | tuple[str, ...]) -> None:
    """Raise :class:`GlobError` if ``globs`` are over a limit."""
    if len(globs) > MAX_GLOBS:
        raise GlobError(f"repos: {len(globs)} globs, at most {MAX_GLOBS}; use a wider glob such as 'org/*'")
    for glob in globs:
        if len(glob) > MAX_GLOB_LENGTH:
            raise GlobError(f"repos: a glob of {len(glob)} characters, at most {MAX_GLOB_LENGTH}")


def _segment(text: str) -> re.Pattern[str]:
    return re.compile("".join("." if char == "?" else re.escape(char) for char in text), re.DOTALL)


@attrs.frozen
class Glob:
    """One glob, split at its stars (``parts[0]`` before the first, ``parts[-1]`` after the
    last; a glob without a star has one part, which must be the whole name).  Each part
    matches exactly ``len(part)`` characters: a literal or a ``?`` each."""

    text: str
    parts: tuple[str, ...]
    segments: tuple[re.Pattern[str], ...]

    @classmethod
    def compile(cls, text: str) -> Glob:
        parts = tuple(text.split("*"))
        return cls(text, parts, tuple(_segment(part) for part in parts))

    def matches(self, name: str) -> bool:
        segments = self.segments
        if len(segments) == 1:
            return segments[0].fullmatch(name) is not None
        if segments[0].match(name) is None:
            return False
        position = len(self.parts[0])
        tail_start = len(name) - len(self.parts[-1])
        for middle in segments[1:-1]:
            found = middle.search(name, position, tail_start)
            if found is None:
                return False
            position = found.end()
        return tail_start >= position and segments[-1].fullmatch(name, tail_start) is not None
