"""The subset of OData ``$filter`` that Microsoft Graph supports on users, as Graph answers it.

Supported: ``eq`` on userType, accountEnabled, userPrincipalName, mail, department;
``startswith`` on userPrincipalName and displayName; ``in`` on id and userPrincipalName (at most
15 values, like Graph); combined with ``and`` / ``or`` and parentheses. Only in an advanced query
(``ConsistencyLevel: eventual`` and ``$count=true``, Microsoft Graph "Advanced query capabilities on
Microsoft Entra ID objects"): ``ne``, ``not(...)``, comparisons with ``null``, ``endswith`` on
userPrincipalName and mail, and ``eq``/``ne`` on companyName (a property Graph filters only so).
Anything else raises :class:`UnsupportedQueryError`, which the server answers 400
``Request_UnsupportedQuery``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Predicate = Callable[[Any], bool]  # over anything with .get(field), e.g. a Graph JSON dict

USER_EQ_FIELDS = {"userType", "accountEnabled", "userPrincipalName", "mail", "department"}
#: user properties Graph indexes only in its advanced store: any filter on them is an advanced query
#: ("Advanced query capabilities", the table of user properties); the sandbox models companyName
ADVANCED_EQ_FIELDS = {"companyName"}
STARTSWITH_FIELDS = {"userPrincipalName", "displayName"}
IN_FIELDS = {"id", "userPrincipalName"}
CASE_INSENSITIVE = {"userPrincipalName", "mail", "displayName", "department", "userType", "companyName"}
ENDSWITH_FIELDS = {"userPrincipalName", "mail"}
MAX_IN_VALUES = 15
ADVANCED_HELP = "Refer to https://aka.ms/graph-docs/advanced-queries for more information"

TOKEN = re.compile(r"\s*(?:(\()|(\))|(,)|('(?:[^']|'')*')|([A-Za-z_][\w.]*)|(-?\d+))")


class UnsupportedQueryError(ValueError):
    """The filter is outside what Graph supports for this resource."""


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = TOKEN.match(text, pos)
        if not match:
            raise UnsupportedQueryError(f"Invalid filter clause: syntax error at position {pos} in '{text}'.")
        out.append(match.group(0).strip())
        pos = match.end()
    return out


@dataclass(frozen=True)
class Advanced:
    """Which advanced query parameters the request carries."""

    consistency_eventual: bool = False
    count: bool = False

    def require(self, operator: str) -> None:
        """Graph's refusal of an advanced-only operator without its parameters."""
        if not self.consistency_eventual:
            raise UnsupportedQueryError(
                f"Operator '{operator}' is not supported because the 'ConsistencyLevel:eventual' header is missing. "
                + ADVANCED_HELP
            )
        if not self.count:
            raise UnsupportedQueryError(
                f"Operator '{operator}' is not supported because the required parameters might be missing. "
                f"Try adding $count=true query parameter and ConsistencyLevel:eventual header. {ADVANCED_HELP}"
            )


class _Parser:
    def __init__(self, text: str, fields: set[str], advanced: Advanced) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.text = text
        self.eq_fields = fields
        self.advanced = advanced

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token.lower() != expected):
            raise UnsupportedQueryError(f"Invalid filter clause: expected {expected or 'a term'} in '{self.text}'.")
        self.pos += 1
        return token

    def parse(self) -> Predicate:
        predicate = self.or_expr()
        if self.peek() is not None:
            raise UnsupportedQueryError(f"Invalid filter clause: unexpected '{self.peek()}' in '{self.text}'.")
        return predicate

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while (self.peek() or "").lower() == "or":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda o: any(p(o) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.term()]
        while (self.peek() or "").lower() == "and":
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda o: all(p(o) for p in parts))

    def literal(self) -> Any:
        token = self.take()  # an OData token, not a credential
        if token.startswith("'"):
            return token[1:-1].replace("''", "'")
        if token.lower() in ("true", "false"):
            return token.lower() == "true"
        if token.lower() == "null":
            return None
        raise UnsupportedQueryError(f"Invalid filter clause: '{token}' is not a literal in '{self.text}'.")

    def term(self) -> Predicate:
        if self.peek() == "(":
            self.take()
            inner = self.or_expr()
            self.take(")")
            return inner
        name = self.take()
        if name.lower() == "not" and self.peek() == "(":
            self.advanced.require("not")
            self.take("(")
            negated = self.or_expr()
            self.take(")")
            return lambda o: not negated(o)
        if name.lower() == "endswith":
            self.advanced.require("endsWith")
            self.take("(")
            field = self.take()
            self.take(",")
            suffix = self.literal()
            self.take(")")
            if field not in ENDSWITH_FIELDS or not isinstance(suffix, str):
                raise UnsupportedQueryError(
                    f"Unsupported or invalid query filter clause specified for property '{field}' of resource 'User'."
                )
            low_suffix = suffix.lower()
            return lambda o: str(o.get(field) or "").lower().endswith(low_suffix)
        if name.lower() == "startswith":
            self.take("(")
            field = self.take()
            self.take(",")
            prefix = self.literal()
            self.take(")")
            if field not in STARTSWITH_FIELDS or not isinstance(prefix, str):
                raise UnsupportedQueryError(
                    f"Unsupported or invalid query filter clause specified for property '{field}' of resource 'User'."
                )
            low = prefix.lower()
            return lambda o: str(o.get(field) or "").lower().startswith(low)
        op = (self.take() if self.peek() else "").lower()
        if op in ("eq", "ne"):
            if op == "ne":
                self.advanced.require("ne")
            value = self.literal()
            if value is None:  # "null values" are advanced-only for every user property that has them
                self.advanced.require(f"{op} null")
            if name in ADVANCED_EQ_FIELDS and self.eq_fields is USER_EQ_FIELDS:
                self.advanced.require(f"{op} on {name}")
            elif name not in self.eq_fields:
                raise UnsupportedQueryError(
                    f"Unsupported or invalid query filter clause specified for property '{name}' of resource 'User'."
                )
            equal = _equals(name, value)
            return equal if op == "eq" else (lambda o: not equal(o))
        if op == "in":
            self.take("(")
            values = [self.literal()]
            while self.peek() == ",":
                self.take()
                values.append(self.literal())
            self.take(")")
            if name not in IN_FIELDS:
                raise UnsupportedQueryError(
                    f"Unsupported or invalid query filter clause specified for property '{name}' of resource 'User'."
                )
            if len(values) > MAX_IN_VALUES:
                raise UnsupportedQueryError(
                    "Too many child clauses specified in search filter expression containing 'OR' operators: "
                    f"{len(values)}. Max allowed: {MAX_IN_VALUES}."
                )
            wanted = {str(v).lower() for v in values}
            return lambda o: str(o.get(name) or "").lower() in wanted
        raise UnsupportedQueryError(f"Unsupported query operator '{op}' for property '{name}'.")


def _equals(name: str, value: Any) -> Predicate:
    if name in CASE_INSENSITIVE and isinstance(value, str):
        low = value.lower()
        return lambda o: str(o.get(name) or "").lower() == low
    return lambda o: o.get(name) == value


def parse_filter(text: str, fields: set[str] | None = None, advanced: Advanced | None = None) -> Predicate:
    """Compile a ``$filter`` expression into a predicate over Graph JSON objects.

    :param advanced: the advanced query parameters the request carries (none when not given).
    :raises UnsupportedQueryError: for anything Graph would refuse.
    """
    return _Parser(text, fields if fields is not None else USER_EQ_FIELDS, advanced or Advanced()).parse()
