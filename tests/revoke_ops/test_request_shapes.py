"""The request shapes revoke-ops sends, checked against Microsoft Graph's documented rules.

These run without a server: they capture what :class:`GraphSession` would put on the wire.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from revoke_ops.graph import BatchItem, GraphResponse, GraphSession, needs_advanced_query, odata_literal, user_path
from revoke_ops.targets import parse_target


class CapturingSession(GraphSession):
    """A GraphSession whose wire is a list: what ``send`` was asked to send."""

    def __init__(self) -> None:  # no identity, no HTTP client
        self.sent: list[tuple[str, str, Any]] = []

    async def send(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        client_request_id: str | None = None,
    ) -> GraphResponse:
        self.sent.append((method, url, body))
        return GraphResponse(200, {}, {"responses": []}, "x")


def test_batch_write_items_carry_a_body_and_content_type_even_without_a_payload():
    # Graph answers 400 "Write request id : 1 does not contain Content-Type header or body." to a
    # bodyless POST item (microsoft-graph-docs#6682, for revokeSignInSessions itself).
    session = CapturingSession()
    items = [
        BatchItem("1", "POST", "/users/x/revokeSignInSessions"),
        BatchItem("2", "PATCH", "/users/x", {"accountEnabled": False}),
        BatchItem("3", "GET", "/users/x?$select=id"),
    ]
    asyncio.run(session.batch(items))
    (method, url, payload) = session.sent[0]
    assert (method, url) == ("POST", "/$batch")
    revoke, patch, read = payload["requests"]
    assert revoke["body"] == {}
    assert revoke["headers"] == {"Content-Type": "application/json"}
    assert patch["body"] == {"accountEnabled": False}
    assert patch["headers"] == {"Content-Type": "application/json"}
    assert "body" not in read and "headers" not in read
    assert all(not r["url"].startswith("http") for r in payload["requests"]), "relative URLs only inside a batch"


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("6d9f9b1c-1111-4222-8333-944445555666", "/users/6d9f9b1c-1111-4222-8333-944445555666"),
        ("adele@contoso.com", "/users/adele@contoso.com"),
        # '#' would end the path (the rest a fragment): percent-encoded, as Graph's docs say for #EXT#
        ("adele_fabrikam.com#EXT#@contoso.com", "/users/adele_fabrikam.com%23EXT%23@contoso.com"),
        ("o'brien@contoso.com", "/users/o'brien@contoso.com"),
        # a UPN beginning with $ is addressed as /users('...') with quotes doubled inside
        ("$adele@contoso.com", "/users('$adele@contoso.com')"),
        ("$o'brien@contoso.com", "/users('$o''brien@contoso.com')"),
        # anything that could change the URL's structure is encoded
        ("a/b?c=d@contoso.com", "/users/a%2Fb%3Fc%3Dd@contoso.com"),
    ],
)
def test_user_paths_are_encoded_as_graph_requires(key: str, path: str):
    assert user_path(key) == path


def test_odata_literals_double_apostrophes():
    assert odata_literal("o'brien@contoso.com") == "'o''brien@contoso.com'"


@pytest.mark.parametrize(
    ("text", "advanced"),
    [
        ("department eq 'Sales'", False),
        ("startsWith(displayName,'a')", False),
        ("displayName eq 'not me' and department eq 'ne'", False),  # words inside literals do not count
        ("endsWith(mail,'@contoso.com')", True),
        ("department ne 'Sales'", True),
        ("not(department eq 'Sales')", True),
        ("assignedLicenses/$count eq 0", True),
        # the advanced-queries page's table of user properties: null comparisons and properties
        # indexed only in the advanced store, whatever the operator
        ("department eq null", True),
        ("department eq 'null'", False),
        ("companyName eq 'Contoso'", True),
        ("onPremisesExtensionAttributes/extensionAttribute1 eq 'incident-42'", True),
        ("startsWith(officeLocation,'B')", True),
        ("displayName eq 'companyName'", False),
    ],
)
def test_filters_needing_advanced_query_headers_are_recognised(text: str, advanced: bool):
    assert needs_advanced_query(text) is advanced


@pytest.mark.parametrize(
    "upn",
    [
        "o'brien@contoso.com",
        "$adele@contoso.com",
        "a.b-c_d!e#f^g~h@sub.contoso.com",
        "x_y.com#EXT#@contoso.onmicrosoft.com",
    ],
)
def test_every_character_entra_allows_in_a_upn_is_accepted(upn: str):
    assert parse_target(upn, "--user").kind == "upn"


@pytest.mark.parametrize("value", ["breakglass@contoso.com?@x.io", "a b@contoso.com", "a/b@contoso.com", "a@b"])
def test_values_that_would_change_a_url_are_not_upns(value: str):
    with pytest.raises(Exception, match="neither a user object id"):
        parse_target(value, "--user")
