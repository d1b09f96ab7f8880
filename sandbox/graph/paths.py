"""Resource paths as Graph reads them: each segment percent-decoded on its own, keys in ``('...')``.

- A segment is decoded after the path is split, so ``%2F`` stays inside its segment and ``%23``
  (``#`` in a guest's ``#EXT#`` UPN) arrives; an unencoded ``#`` never arrives at all: it starts the
  URL's fragment, which a client does not send (and which Graph drops from a ``$batch`` item's URL).
- Graph reads a segment that starts with ``$`` as a system segment (``$batch``, ``$ref``,
  ``$count``, ...): a user whose UPN starts with ``$`` must be addressed as ``/users('$x@y')``
  (Microsoft Graph, "Get user": "If the userPrincipalName begins with a $ character, remove the
  slash (/) after /users and enclose the userPrincipalName in parentheses and single quotes").
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from sandbox.graph.base import GraphError

SYSTEM_SEGMENTS = frozenset({"$batch", "$ref", "$count", "$value", "$metadata"})
_KEY_IN_PARENS = re.compile(r"^([A-Za-z][A-Za-z0-9]*)\('((?:[^']|'')*)'\)$")


def split_path(raw: str) -> list[str]:
    """The segments of a raw (still percent-encoded) path below ``/v1.0``.

    :raises GraphError: 400 for a segment that starts with ``$`` and is no system segment.
    """
    segments: list[str] = []
    for raw_segment in raw.split("#", 1)[0].split("/"):
        if not raw_segment:
            continue
        segment = unquote(raw_segment)
        keyed = _KEY_IN_PARENS.match(segment)
        if keyed:
            segments += [keyed.group(1), keyed.group(2).replace("''", "'")]
            continue
        if segment.startswith("$") and segment not in SYSTEM_SEGMENTS:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        segments.append(segment)
    return segments
