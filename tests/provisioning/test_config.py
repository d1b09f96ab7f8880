"""Stack config validation: every invalid value names the key, the value and what is allowed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioning.config import (
    DEFAULT_CERTIFICATES,
    DEFAULTS,
    GeneratedCertificate,
    ProvidedCertificate,
    certificate_common_name,
    load,
)
from provisioning.errors import StackConfigError
from provisioning.keys import KEYS
from revoke_ops.facts import CLOUDS
from tests.certs import make_certificate, sha1_thumbprint, sha256_fingerprint

TENANT = "5a1db0c5-0000-4000-8000-00000000beef"
ROOT = Path(__file__).resolve().parents[2]


def load_ok(raw: dict[str, Any], **azuread: str) -> Any:
    return load(raw, azuread={"tenantId": TENANT, **azuread}, environ={})


def error_of(
    raw: dict[str, Any],
    *,
    azuread: dict[str, str] | None = None,
    environ: dict[str, str] | None = None,
    base_dir: Path | None = None,
) -> str:
    with pytest.raises(StackConfigError) as info:
        load(
            raw, azuread={"tenantId": TENANT} if azuread is None else azuread, environ=environ or {}, base_dir=base_dir
        )
    return str(info.value)


def test_defaults_give_application_mode_with_user_read_and_one_generated_slot():
    cfg = load_ok({})
    assert cfg.permission_mode == "application"
    assert cfg.application_permissions == ("User.RevokeSessions.All", "User.Read.All")
    assert cfg.delegated_permissions == ()
    assert cfg.certificates == (GeneratedCertificate("primary", 2048, 365),)
    assert cfg.cloud == CLOUDS["public"]
    assert cfg.owners == ()
    assert cfg.operators_group is None
    assert cfg.protect is False


def test_pulumi_yaml_declares_every_key_of_the_table_with_its_type_and_default():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    declared = project["config"]
    table = {k.name: k for k in KEYS if k.type != "structured"}
    assert set(declared) == set(table), "Pulumi.yaml and provisioning/keys.py declare different keys"
    for name, key in table.items():
        spec = declared[name]
        assert "default" in spec, f"{name} has no default in Pulumi.yaml, so every stack would have to set it"
        assert spec["default"] == key.default == DEFAULTS[name], f"Pulumi.yaml default of {name} differs"
        assert spec["type"] == key.type, f"Pulumi.yaml type of {name} differs from the table's"
        assert spec.get("description"), f"{name} has no description in Pulumi.yaml"
    assert project["stackConfigDir"] == "stacks"
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == ".venv"
    # Structured keys cannot be declared in Pulumi's type system: they are documented there.
    text = (ROOT / "Pulumi.yaml").read_text()
    for key in KEYS:
        if key.type == "structured":
            assert f"revoke-sessions:{key.name}" in text
    assert DEFAULT_CERTIFICATES == [{"name": "primary", "rsaBits": 2048, "validityDays": 365}]
    assert "Default: [{name: primary, rsaBits: 2048, validityDays: 365}]" in text


def test_every_key_of_the_table_is_read_by_the_loader():
    # A value of the wrong type for each key is reported under that key's name.
    wrong = {k.name: 42 for k in KEYS}
    message = error_of(wrong)
    for key in KEYS:
        assert f"revoke-sessions:{key.name} must" in message, key.name


def test_values_arrive_as_pulumi_strings():
    cfg = load_ok(
        {
            "permissionMode": "both",
            "readPermissions": json.dumps(["GroupMember.Read.All", "User.Read.All"]),
            "protect": "true",
            "owners": json.dumps(["AAAAAAAA-0000-4000-8000-000000000001"]),
        }
    )
    assert cfg.permission_mode == "both"
    # canonical order, whatever the stack file's order
    assert cfg.read_permissions == ("User.Read.All", "GroupMember.Read.All")
    assert cfg.protect is True
    assert cfg.owners == ("aaaaaaaa-0000-4000-8000-000000000001",)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"permissionMode": "app"},
            "revoke-sessions:permissionMode must be one of application, delegated, both (got 'app')",
        ),
        (
            {"readPermissions": '["Directory.Read.All"]'},
            "revoke-sessions:readPermissions must list only User.Read.All, GroupMember.Read.All, "
            "RoleManagement.Read.Directory, AuditLog.Read.All (got 'Directory.Read.All')",
        ),
        (
            {"readPermissions": "User.Read.All"},
            "revoke-sessions:readPermissions must be a YAML list (got 'User.Read.All')",
        ),
        ({"protect": "yes"}, "revoke-sessions:protect must be true or false (got 'yes')"),
        ({"displayName": ""}, "revoke-sessions:displayName must be 1 to 120 characters (got '')"),
        (
            {"owners": '["not-a-guid"]'},
            "revoke-sessions:owners must list user or service principal object ids (GUIDs) (got 'not-a-guid')",
        ),
        (
            {"operatorsGroup": "ops", "permissionMode": "both"},
            "revoke-sessions:operatorsGroup must be a group object id (a GUID) (got 'ops')",
        ),
        (
            {"operatorsGroup": "0f1e2d3c-4b5a-4697-8877-665544332211"},
            "revoke-sessions:operatorsGroup only applies with permissionMode delegated or both",
        ),
        (
            {"grantToPrincipals": '["0f1e2d3c-4b5a-4697-8877-665544332211"]', "permissionMode": "delegated"},
            "revoke-sessions:grantToPrincipals receive application permissions",
        ),
        (
            {"permisionMode": "both"},
            "revoke-sessions:permisionMode is not a known key; did you mean revoke-sessions:permissionMode? known",
        ),
        (
            {"cloud": "azure"},
            "revoke-sessions:cloud must be one of public, usgovernment, usgovernmentdod, china, custom (got 'azure')",
        ),
        (
            {"cloud": "custom", "authorityHost": "https://login.example"},
            "revoke-sessions:graphEndpoint must be an https:// URL without spaces or backslashes (got '') "
            "(with cloud custom)",
        ),
        (
            {
                "cloud": "custom",
                "authorityHost": "http://127.0.0.1:8443",
                "graphEndpoint": "https://g.example/v1.0",
                "graphScope": "https://g.example/.default",
            },
            "revoke-sessions:authorityHost must use https:// (got 'http://127.0.0.1:8443') (with cloud custom)",
        ),
        (
            {
                "cloud": "custom",
                "authorityHost": "https://login.microsoftonline.com@127.0.0.1",
                "graphEndpoint": "https://g.example/v1.0?x=1",
                "graphScope": "https://g.example/.default",
            },
            "revoke-sessions:authorityHost must not carry a user name or password before the host",
        ),
        (
            {"displayName": "revoke\nsessions"},
            "revoke-sessions:displayName must be one line of printable characters, no newlines or tabs "
            "(got 'revoke\\nsessions')",
        ),
        (
            {"displayName": "r" * 60},
            "revoke-sessions:displayName is too long for certificate slot 'primary': the certificate's common "
            f"name {'r' * 60 + ' (primary)'!r} would be 70 characters, over X.509's 64; use at most 54 characters",
        ),
        (
            {"certificates": '[{"name": "primary", "rsaBits": 2048.0}]'},
            "revoke-sessions:certificates[0].rsaBits must be one of 2048, 3072, 4096 (got 2048.0)",
        ),
        ({"graphEndpoint": "https://g.example/v1.0"}, "revoke-sessions:graphEndpoint only applies with cloud custom"),
        (
            {"certificates": '[{"name": "a", "validityDays": 731}]'},
            "revoke-sessions:certificates[0].validityDays must be a whole number of days from 1 to 730 (got 731)",
        ),
        (
            {"certificates": '[{"name": "a", "validityDays": 0}]'},
            "revoke-sessions:certificates[0].validityDays must be a whole number of days from 1 to 730 (got 0)",
        ),
        (
            {"certificates": '[{"name": "a", "rsaBits": 1024}]'},
            "revoke-sessions:certificates[0].rsaBits must be one of 2048, 3072, 4096 (got 1024)",
        ),
        ({"certificates": "[]"}, "revoke-sessions:certificates is empty and no federatedCredentials are set"),
        (
            {"certificates": '[{"name": "a"}, {"name": "a"}]'},
            "revoke-sessions:certificates[1].name 'a' is used by more than one slot",
        ),
        (
            {"certificates": '[{"name": "Bad Name"}]'},
            "revoke-sessions:certificates[0].name must be 1-32 lowercase letters, digits or dashes (got 'Bad Name')",
        ),
        (
            {"certificates": '[{"name": "a", "pem": "x", "rsaBits": 2048}]'},
            "revoke-sessions:certificates[0] has rsaBits, not allowed in a supplied-certificate slot",
        ),
    ],
)
def test_invalid_values_name_the_key_value_and_what_is_allowed(raw: dict[str, Any], expected: str):
    assert expected in error_of(raw)


def test_all_problems_are_reported_at_once():
    message = error_of({"permissionMode": "app", "cloud": "mars"})
    assert message.startswith("2 problems in the stack configuration:")
    assert "permissionMode" in message
    assert "cloud" in message


def test_missing_tenant_says_what_to_set():
    message = error_of({}, azuread={})
    assert "azuread:tenantId is required in every stack" in message
    assert "pulumi config set azuread:tenantId" in message
    assert "azuread:tenantId must be a tenant id (a GUID) (got 'contoso')" in error_of(
        {}, azuread={"tenantId": "contoso"}
    )


@pytest.mark.parametrize(
    ("cloud", "environment", "ok"),
    [
        ("public", "global", True),
        ("public", "public", True),
        ("usgovernment", "usgovernmentl4", True),
        ("usgovernmentdod", "dod", True),
        ("china", "china", True),
        ("public", "usgovernmentl4", False),
        ("usgovernment", "global", False),
        ("usgovernmentdod", "usgovernmentl4", False),
    ],
)
def test_cloud_must_agree_with_the_azuread_environment(cloud: str, environment: str, ok: bool):
    raw = {"cloud": cloud}
    if ok:
        assert load_ok(raw, environment=environment).cloud.name == cloud
    else:
        message = error_of(raw, azuread={"tenantId": TENANT, "environment": environment})
        assert (
            f"revoke-sessions:cloud is {cloud!r} but the azuread provider's environment "
            f"(azuread:environment) is {environment!r}" in message
        )


def test_cloud_mismatch_with_arm_environment_variable():
    message = error_of({"cloud": "china"}, environ={"ARM_ENVIRONMENT": "public"})
    assert "environment (ARM_ENVIRONMENT) is 'public'" in message
    assert "for this cloud it must be one of china" in message


def test_national_and_custom_cloud_endpoints():
    gov = load_ok({"cloud": "usgovernmentdod"}).cloud
    assert gov.graph_endpoint == "https://dod-graph.microsoft.us/v1.0"
    assert gov.graph_scope == "https://dod-graph.microsoft.us/.default"
    custom = load_ok(
        {
            "cloud": "custom",
            "authorityHost": "https://127.0.0.1:8443/",
            "graphEndpoint": "https://127.0.0.1:8443/v1.0/",
            "graphScope": "https://graph.microsoft.com/.default",
        }
    ).cloud
    # no trailing slash: otherwise Graph paths become /v1.0//users
    assert custom.authority_host == "https://127.0.0.1:8443"
    assert custom.graph_endpoint == "https://127.0.0.1:8443/v1.0"


def provided(pem: str) -> dict[str, str]:
    return {"certificates": json.dumps([{"name": "ops", "pem": pem}])}


def test_supplied_certificate_is_read_with_thumbprints_and_expiry():
    cert, _key = make_certificate(days=100)
    cfg = load_ok(provided(cert))
    (slot,) = cfg.certificates
    assert isinstance(slot, ProvidedCertificate)
    assert slot.sha1_thumbprint == sha1_thumbprint(cert)
    assert slot.sha256_fingerprint == sha256_fingerprint(cert)
    assert timedelta(days=99) < slot.not_after - datetime.now(UTC) <= timedelta(days=100)
    assert "BEGIN" not in repr(slot), "the slot's repr must not carry PEM text"


def test_supplied_certificate_from_a_file_relative_to_the_project(tmp_path: Path):
    cert, _key = make_certificate()
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ops.pem").write_text(cert)
    raw = {"certificates": json.dumps([{"name": "ops", "pemFile": "certs/ops.pem"}])}
    cfg = load(raw, azuread={"tenantId": TENANT}, environ={}, base_dir=tmp_path)
    assert cfg.certificates[0].source == "provided"
    missing = error_of({"certificates": json.dumps([{"name": "ops", "pemFile": "nope.pem"}])}, base_dir=tmp_path)
    assert f"revoke-sessions:certificates[0].pemFile cannot be read: {tmp_path / 'nope.pem'}" in missing


def assert_no_key_material(message: str, *pems: str) -> None:
    assert "-----BEGIN" not in message
    for pem in pems:
        body = "".join(pem.strip().splitlines()[1:-1])
        for i in range(0, len(body) - 16, 16):
            assert body[i : i + 16] not in message, "the error message leaks PEM material"


def test_non_rsa_certificate_is_refused_by_fingerprint():
    cert, key = make_certificate(key_type="ec")
    message = error_of(provided(cert))
    assert f"revoke-sessions:certificates[0].pem (certificate SHA-256 {sha256_fingerprint(cert)})" in message
    assert "only RSA keys are allowed" in message
    assert_no_key_material(message, cert, key)


def test_expired_supplied_certificate_is_refused():
    cert, key = make_certificate(days=10, not_before=datetime.now(UTC) - timedelta(days=20))
    message = error_of(provided(cert))
    assert f"(certificate SHA-256 {sha256_fingerprint(cert)}) expired on" in message
    assert "supply a current certificate" in message
    assert_no_key_material(message, cert, key)


def test_bad_pem_is_refused_without_echoing_it():
    cert, key = make_certificate()
    garbled = cert.replace("M", "#", 3)
    message = error_of(provided(garbled))
    assert "revoke-sessions:certificates[0].pem is not a PEM X.509 certificate" in message
    assert_no_key_material(message, cert, key)


def test_a_private_key_is_never_accepted_into_state():
    cert, key = make_certificate()
    message = error_of(provided(cert + key))
    assert "contains a private key: supply only the public certificate" in message
    assert_no_key_material(message, cert, key)


def test_small_rsa_key_is_refused():
    cert, key = make_certificate(bits=1024)
    message = error_of(provided(cert))
    assert "has an RSA-1024 key; at least RSA-2048 is required" in message
    assert_no_key_material(message, cert, key)


def test_a_long_display_name_fits_when_every_slot_is_supplied():
    cert, _ = make_certificate()
    config = load_ok({"displayName": "r" * 100, "certificates": json.dumps([{"name": "hsm", "pem": cert}])})
    assert config.display_name == "r" * 100


def test_the_longest_accepted_display_name_makes_a_64_character_common_name():
    config = load_ok({"displayName": "r" * 54})
    assert len(certificate_common_name(config.display_name, config.certificates[0].name)) == 64


@pytest.mark.parametrize("mode", ["delegated", "both"])
def test_delegated_mode_without_operators_group_warns_who_can_sign_in(mode: str):
    (warning,) = load_ok({"permissionMode": mode}).warnings
    assert "revoke-sessions:operatorsGroup is not set" in warning
    assert "every user in the tenant can sign in to the app and obtain the delegated scopes" in warning
    grouped = load_ok({"permissionMode": mode, "operatorsGroup": "0f1e2d3c-4b5a-4697-8877-665544332211"})
    assert grouped.warnings == ()
    assert load_ok({"permissionMode": "application"}).warnings == ()
    # Consent for named users only: no one else holds the admin-consented scopes.
    named = load_ok({"permissionMode": mode, "delegatedConsentUsers": ["7d6c5b4a-3928-4716-a5b4-c3d2e1f0a9b8"]})
    assert named.warnings == ()


def test_containment_permissions_are_opt_in_and_granted_once():
    """issue 14: nothing changes for stacks that do not opt in; User.Read.All is granted once."""
    assert "User.EnableDisableAccount.All" not in load_ok({}).permissions
    cfg = load_ok(
        {
            "readPermissions": json.dumps(["User.Read.All"]),
            "containmentPermissions": json.dumps(["User.EnableDisableAccount.All", "User.Read.All"]),
        }
    )
    assert cfg.permissions.count("User.Read.All") == 1
    assert "User.EnableDisableAccount.All" in cfg.permissions
    # the write permission alone brings its read half (Graph refuses the PATCH without a user read)
    alone = load_ok({"readPermissions": "[]", "containmentPermissions": '["User.EnableDisableAccount.All"]'})
    assert alone.permissions == ("User.RevokeSessions.All", "User.EnableDisableAccount.All", "User.Read.All")


def test_containment_permissions_refuse_anything_else_naming_it():
    message = error_of({"containmentPermissions": json.dumps(["Directory.ReadWrite.All"])})
    assert "revoke-sessions:containmentPermissions must list only User.EnableDisableAccount.All" in message
    assert "'Directory.ReadWrite.All'" in message


def _private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(65537, 2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("displayName", "pem"),
        ("operatorsGroup", "pem"),
        ("certificates", "pem"),
        ("certificates", "pem-name"),
        ("readPermissions", "pem-list"),
        ("graphEndpoint", "pem"),
        ("operatorsGroup", "token"),
        ("displayName", "body"),
    ],
)
def test_a_key_pasted_under_the_wrong_key_is_never_quoted(key: str, value: str):
    """Issue 10 #6, the stack-config side: a validation message (shown by `pulumi up`, kept in CI
    logs) names the key and the rule but never quotes what looks like key material."""
    pem = _private_key_pem()
    body = "".join(pem.splitlines()[1:-1])
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0aGUtc2VjcmV0LXN1YmplY3QifQ.c2lnbmF0dXJlLXRoYXQtaXMtc2VjcmV0"
    raw: Any = {
        "pem": pem,
        "pem-name": json.dumps([{"name": pem}]),
        "pem-list": json.dumps([pem]),
        "token": token,
        "body": body[:110],
    }[value]
    config: dict[str, Any] = {key: raw}
    if key == "operatorsGroup":
        config["permissionMode"] = "both"
    if key == "graphEndpoint":
        config.update(cloud="custom", authorityHost="https://login.example")
    message = error_of(config)
    assert f"revoke-sessions:{key}" in message
    assert "PRIVATE KEY" not in message and "eyJ" not in message, message
    assert not any(line[:24] in message for line in pem.splitlines()[1:-1]), message
