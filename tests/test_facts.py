"""The shared helpers both sides rely on: thumbprints, RFC 3339 times, a cloud's endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from revoke_ops.facts import CLOUDS, endpoint_problems, parse_rfc3339, rfc3339, thumbprint, utc_seconds
from tests.certs import make_certificate


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # As Go's time.MarshalText writes a time.Now()-based value (RFC3339Nano, trailing zeros cut).
        ("2027-11-26T16:13:00.123456789Z", "2027-11-26T16:13:00Z"),
        ("2027-11-26T17:13:00.1234+01:00", "2027-11-26T16:13:00Z"),
        ("2027-11-26T16:13:00Z", "2027-11-26T16:13:00Z"),
        ("2027-11-26T11:13:59.999999999-05:00", "2027-11-26T16:13:59Z"),  # truncated, as Go's Format
        ("2027-11-27T01:43:00.5+09:30", "2027-11-26T16:13:00Z"),
        ("2027-01-01T00:30:00+01:00", "2026-12-31T23:30:00Z"),  # the offset moves the date back
        ("2027-11-26t16:13:00z", "2027-11-26T16:13:00Z"),
    ],
)
def test_utc_seconds_normalises_any_rfc3339_time(value: str, expected: str):
    assert utc_seconds(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2027-11-26",
        "2027-11-26T16:13:00",  # no offset: the zone would be a guess
        "2027-11-26 16:13:00Z",
        "2027-11-26T16:13:00.1234567890Z",  # ten fractional digits
        "2027-11-26T16:13:00.Z",
        "2027-02-30T16:13:00Z",
        "2027-11-26T24:00:00Z",
        "2027-11-26T16:13:00+0100",
        "",
    ],
)
def test_utc_seconds_refuses_what_is_not_rfc3339(value: str):
    with pytest.raises(ValueError, match="RFC 3339"):
        utc_seconds(value)


def test_parse_keeps_microseconds_and_offset():
    parsed = parse_rfc3339("2027-11-26T17:13:00.1234567+01:00")
    assert parsed == datetime(2027, 11, 26, 16, 13, 0, 123456, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(hours=1)


def test_rfc3339_formats_in_utc_and_refuses_naive_times():
    moment = datetime(2027, 11, 26, 17, 13, 5, 42, tzinfo=timezone(timedelta(hours=1)))
    assert rfc3339(moment) == "2027-11-26T16:13:05Z"
    assert rfc3339(moment, fraction=True) == "2027-11-26T16:13:05.000042Z"
    with pytest.raises(ValueError, match="no time zone"):
        rfc3339(datetime(2027, 11, 26))  # naive on purpose


def test_thumbprint_matches_cryptography_for_pem_and_der():
    pem, _ = make_certificate()
    cert = x509.load_pem_x509_certificate(pem.encode())
    sha1 = cert.fingerprint(hashes.SHA1()).hex().upper()  # Entra's thumbprint is SHA-1
    sha256 = cert.fingerprint(hashes.SHA256()).hex().upper()
    assert thumbprint(pem) == sha1
    assert thumbprint(pem.encode()) == sha1
    assert thumbprint(cert.public_bytes(Encoding.DER)) == sha1
    assert thumbprint(pem, "sha256") == sha256
    # Text around the block (a chain file's comments) does not change it.
    assert thumbprint(f"subject=CN test\n{pem}") == sha1


def test_thumbprint_refuses_pem_without_a_certificate():
    with pytest.raises(ValueError, match="BEGIN CERTIFICATE"):
        thumbprint("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_each_microsoft_cloud_accepts_exactly_its_own_endpoints(name: str):
    cloud = CLOUDS[name]
    assert endpoint_problems(name, cloud.graph_endpoint, cloud.authority_host) == []
    assert endpoint_problems(name, cloud.graph_endpoint + "/", cloud.authority_host + "/") == []
    assert endpoint_problems(name, cloud.graph_endpoint.replace("https://", "https://A"), cloud.authority_host) != []


GRAPH, LOGIN, LOCAL = "https://graph.microsoft.com/v1.0", "https://login.microsoftonline.com", "https://127.0.0.1:8443"


@pytest.mark.parametrize(
    ("cloud", "graph", "authority", "complaint"),
    [
        (
            "public",
            "https://localhost:47443/v1.0",
            LOGIN,
            "graphEndpoint must be on graph.microsoft.com for cloud public",
        ),
        ("public", GRAPH, "https://login.microsoftonline.com@127.0.0.1", "authorityHost must not carry a user name"),
        (
            "public",
            GRAPH,
            LOGIN + ".evil.example",
            "authorityHost must be on login.microsoftonline.com for cloud public",
        ),
        ("public", "https://graph.microsoft.com:8443/v1.0", LOGIN, "graphEndpoint must use the default https port"),
        ("public", "http://graph.microsoft.com/v1.0", LOGIN, "graphEndpoint must use https://"),
        ("public", "https://graph.microsoft.com/beta", LOGIN, "graphEndpoint must end in /v1.0"),
        ("public", GRAPH + "?x=1", LOGIN, "graphEndpoint must not have a query"),
        ("public", GRAPH, LOGIN + "/common", "authorityHost must be https://host without a path"),
        ("usgovernment", GRAPH, "https://login.microsoftonline.us", "graphEndpoint must be on graph.microsoft.us"),
        (
            "usgovernmentdod",
            "https://graph.microsoft.us/v1.0",
            "https://login.microsoftonline.us",
            "dod-graph.microsoft.us",
        ),
        (
            "china",
            "https://microsoftgraph.chinacloudapi.cn/v1.0",
            LOGIN,
            "authorityHost must be on login.chinacloudapi.cn",
        ),
        ("custom", "http://127.0.0.1:8443/v1.0", LOCAL, "graphEndpoint must use https://"),
        ("custom", LOCAL + "/v1.0", "https://user:pw@127.0.0.1:8443", "authorityHost must not carry a user name"),
        (
            "custom",
            LOCAL + "\\@evil/v1.0",
            LOCAL,
            "graphEndpoint must be an https:// URL without spaces or backslashes",
        ),
        ("custom", "https://127.0.0.1:99999/v1.0", LOCAL, "graphEndpoint is not a valid URL"),
        ("azure", GRAPH, LOGIN, "cloud must be one of public, usgovernment"),
    ],
)
def test_endpoint_problems_name_the_key_and_the_rule(cloud: str, graph: str, authority: str, complaint: str):
    problems = endpoint_problems(cloud, graph, authority)
    assert any(complaint in p for p in problems), problems


def test_custom_cloud_allows_other_hosts_and_ports():
    assert endpoint_problems("custom", "https://127.0.0.1:47443/v1.0", "https://127.0.0.1:47443") == []
    assert endpoint_problems("custom", "https://graph.contoso.test/v1.0", "https://login.contoso.test") == []


@given(
    moment=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 1, 1), timezones=st.just(UTC)),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
    nanosecond=st.integers(min_value=0, max_value=999_999_999),
)
def test_utc_seconds_of_any_go_marshalled_time_is_its_utc_second(
    moment: datetime, offset_minutes: int, nanosecond: int
):
    whole = moment.replace(microsecond=0)
    local = whole.astimezone(timezone(timedelta(minutes=offset_minutes)))
    fraction = f"{nanosecond:09d}".rstrip("0")
    offset = local.strftime("%z")
    zone = "Z" if offset_minutes == 0 else f"{offset[:3]}:{offset[3:]}"
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + zone
    assert utc_seconds(text) == whole.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert parse_rfc3339(text).microsecond == nanosecond // 1000
