"""Federated credentials: ``revoke-sessions:federatedCredentials``, read and validated.

Each entry becomes a federatedIdentityCredential of the revoker app: a workload outside Azure
(a GitHub Actions environment, an Azure DevOps service connection, a Kubernetes service account)
signs in with its own platform's token, so no secret or key exists anywhere. An entry is either
explicit (``{name, issuer, subject, audience?, description?}``) or a preset that derives issuer and
subject the way each platform writes them:

- ``github: {owner, repository, environment, ownerId?, repositoryId?}`` -> issuer
  ``https://token.actions.githubusercontent.com``; subject
  ``repo:OWNER@OWNERID/REPO@REPOID:environment:NAME`` (immutable subject claims, GitHub's default
  for repositories created or renamed since mid-2026) when both ids are given, else
  ``repo:OWNER/REPO:environment:NAME`` (GitHub docs, "OpenID Connect reference").
- ``azureDevOps: {organizationId, serviceConnectionId}`` -> the Microsoft Entra issuer
  ``<authority>/<tenant>/v2.0`` and subject ``/eid1/c/pub/t/<tenant>/a/<Azure DevOps app>/sc/<org>/<conn>``
  (ids as .NET writes GUID bytes, base64url), what new service connections use; or
  ``azureDevOps: {organization, project, serviceConnection, organizationId}`` -> the Azure DevOps
  issuer ``https://vstoken.dev.azure.com/<organizationId>`` and ``sc://ORG/PROJECT/CONNECTION``
  (older connections; retired in the public cloud on 1 July 2027, kept for national clouds).
- ``kubernetes: {issuer, namespace, serviceAccount}`` -> the cluster's OIDC issuer URL and
  ``system:serviceaccount:NAMESPACE:NAME``.

Graph's rules (federatedIdentityCredential resource type) are checked here, before anything is
declared: ``name`` 1-120 URL-friendly characters (and immutable: renaming replaces it), ``issuer``
an https URL, ``issuer``/``subject``/``audience`` at most 600 characters, exactly one audience
(default ``api://AzureADTokenExchange``), ``issuer`` + ``subject`` unique, at most 20 per app.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from typing import Any, Final

from provisioning.keys import Reader, is_guid, show
from revoke_ops.facts import TOKEN_EXCHANGE_AUDIENCE

__all__ = ["MAX_FEDERATED_CREDENTIALS", "FederatedCredential", "read_federated"]

MAX_FEDERATED_CREDENTIALS: Final = 20
NAME_MAX: Final = 120
VALUE_MAX: Final = 600
#: URL-friendly: RFC 3986 unreserved characters.
NAME = re.compile(r"^[A-Za-z0-9._~-]{1,120}$")
GITHUB_ISSUER: Final = "https://token.actions.githubusercontent.com"
#: Azure DevOps' application id (the ``a`` part of its Entra-issued subjects).
AZURE_DEVOPS_APP_ID: Final = "499b84ac-1321-427f-aa17-267ca6975798"
PRESETS: Final = {
    "github": (("owner", "repository", "environment"), ("ownerId", "repositoryId")),
    "azureDevOps": ((), ("organizationId", "serviceConnectionId", "organization", "project", "serviceConnection")),
    "kubernetes": (("issuer", "namespace", "serviceAccount"), ()),
}
EXPLICIT_KEYS: Final = ("name", "issuer", "subject", "audience", "description")


@dataclass(frozen=True)
class FederatedCredential:
    """One federated identity credential of the revoker app."""

    name: str
    issuer: str
    subject: str
    audience: str = TOKEN_EXCHANGE_AUDIENCE
    description: str | None = None

    def to_bundle(self) -> dict[str, str]:
        """What the bundle lists (all public: a federated credential holds no secret)."""
        return {"name": self.name, "issuer": self.issuer, "subject": self.subject, "audience": self.audience}


def _guid_b64(value: str) -> str:
    """A GUID's bytes as .NET's ``Guid.ToByteArray`` lays them out, base64url without padding."""
    return base64.urlsafe_b64encode(uuid.UUID(value).bytes_le).rstrip(b"=").decode()


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and value == value.strip()


def _preset(r: Reader, where: str, kind: str, spec: Any, tenant_id: str, authority_host: str) -> tuple[str, str] | None:
    """Issuer and subject of a preset, or None (problems recorded)."""
    required, optional = PRESETS[kind]
    if not isinstance(spec, dict):
        r.fail(f"{where}.{kind}", f"must be a mapping (got {show(spec)})")
        return None
    unknown = sorted(set(spec) - {*required, *optional})
    missing = [k for k in required if not _text(spec.get(k))]
    if unknown or missing:
        allowed = ", ".join((*required, *optional))
        r.fail(f"{where}.{kind}", f"needs {', '.join(missing) or 'valid keys'} (allowed: {allowed}; got {show(spec)})")
        return None
    if kind == "github":
        ids = [spec.get("ownerId"), spec.get("repositoryId")]
        if any(i is not None for i in ids):
            if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids):
                r.fail(
                    f"{where}.github",
                    "takes ownerId and repositoryId together, as GitHub's numeric ids (for the immutable subject "
                    f"repo:OWNER@OWNERID/REPO@REPOID:...) (got {show(ids)})",
                )
                return None
            owner, repo = f"{spec['owner']}@{ids[0]}", f"{spec['repository']}@{ids[1]}"
        else:
            owner, repo = spec["owner"], spec["repository"]
        return GITHUB_ISSUER, f"repo:{owner}/{repo}:environment:{spec['environment']}"
    if kind == "kubernetes":
        return spec["issuer"], f"system:serviceaccount:{spec['namespace']}:{spec['serviceAccount']}"
    entra = {"organizationId", "serviceConnectionId"}
    legacy = {"organization", "project", "serviceConnection", "organizationId"}
    if set(spec) == entra and all(is_guid(spec[k]) for k in entra):
        subject = (
            f"/eid1/c/pub/t/{_guid_b64(tenant_id)}/a/{_guid_b64(AZURE_DEVOPS_APP_ID)}"
            f"/sc/{spec['organizationId'].lower()}/{spec['serviceConnectionId'].lower()}"
        )
        return f"{authority_host.rstrip('/')}/{tenant_id}/v2.0", subject
    if set(spec) == legacy and is_guid(spec["organizationId"]) and all(_text(spec[k]) for k in legacy):
        subject = f"sc://{spec['organization']}/{spec['project']}/{spec['serviceConnection']}"
        return f"https://vstoken.dev.azure.com/{spec['organizationId'].lower()}", subject
    r.fail(
        f"{where}.azureDevOps",
        "takes either {organizationId, serviceConnectionId} (GUIDs: the Microsoft Entra issuer, what the service "
        "connection shows) or {organization, project, serviceConnection, organizationId} (the Azure DevOps issuer) "
        f"(got {show(spec)})",
    )
    return None


def read_federated(r: Reader, value: Any, tenant_id: str, authority_host: str) -> tuple[FederatedCredential, ...]:
    """Validate the ``federatedCredentials`` value (already parsed) into credentials.

    :param tenant_id: the stack's tenant (Azure DevOps' Entra-issued subjects carry it).
    :param authority_host: the cloud's identity platform (the Entra issuer's host).
    Problems are recorded on ``r``; invalid entries are left out.
    """
    if not isinstance(value, list):
        r.fail("federatedCredentials", f"must be a list of federated credentials (got {show(value)})")
        return ()
    if len(value) > MAX_FEDERATED_CREDENTIALS:
        r.fail(
            "federatedCredentials",
            f"lists {len(value)} credentials; an application holds at most {MAX_FEDERATED_CREDENTIALS} "
            "(Microsoft Graph)",
        )
    found: list[FederatedCredential] = []
    for index, item in enumerate(value):
        where = f"federatedCredentials[{index}]"
        if not isinstance(item, dict):
            r.fail(
                where,
                "must be a mapping with name and issuer/subject, or name and a github, azureDevOps or "
                "kubernetes preset",
            )
            continue
        credential = _one(r, where, item, tenant_id, authority_host)
        if credential is None:
            continue
        for other in found:
            if other.name == credential.name:
                r.fail(f"{where}.name", f"{credential.name!r} is used by more than one federated credential")
                break
            if (other.issuer, other.subject) == (credential.issuer, credential.subject):
                r.fail(
                    where,
                    f"has the same issuer and subject as {other.name!r} ({show(credential.subject)}); "
                    "Graph requires the pair to be unique within the app",
                )
                break
        else:
            found.append(credential)
    return tuple(found)


def _one(
    r: Reader, where: str, item: dict[str, Any], tenant_id: str, authority_host: str
) -> FederatedCredential | None:
    presets = [k for k in PRESETS if k in item]
    allowed = (*presets, "name", "audience", "description") if presets else EXPLICIT_KEYS
    unknown = sorted(set(item) - set(allowed))
    if len(presets) > 1 or unknown:
        what = f"more than one preset ({', '.join(presets)})" if len(presets) > 1 else ", ".join(unknown)
        r.fail(where, f"has {what}; allowed: {', '.join(allowed)} (issuer/subject or one preset)")
        return None
    name = item.get("name")
    ok = True
    if not isinstance(name, str) or not NAME.match(name):
        r.fail(
            f"{where}.name",
            f"must be 1-{NAME_MAX} URL-friendly characters (letters, digits, - . _ ~) (got {show(name)}); "
            "it cannot be changed later (Graph: renaming replaces the credential)",
        )
        ok = False
    issuer: Any = None
    subject: Any = None
    if presets:
        pair = _preset(r, where, presets[0], item[presets[0]], tenant_id, authority_host)
        if pair is None:
            ok = False
        else:
            issuer, subject = pair
    else:
        issuer, subject = item.get("issuer"), item.get("subject")
        for key, val in (("issuer", issuer), ("subject", subject)):
            if not _text(val):
                r.fail(f"{where}.{key}", f"is required: a string without surrounding spaces (got {show(val)})")
                ok = False
    if isinstance(issuer, str) and not re.match(r"^https://[^\s/@?#]+(?:/\S*)?$", issuer):
        r.fail(f"{where}.issuer", f"must be an https URL, exactly as its tokens' iss claim (got {show(issuer)})")
        ok = False
    audience = item.get("audience", TOKEN_EXCHANGE_AUDIENCE)
    if isinstance(audience, list):
        r.fail(f"{where}.audience", f"takes exactly one audience, as Graph allows (got {show(audience)})")
        ok = False
    elif not _text(audience):
        r.fail(f"{where}.audience", f"must be a non-empty string (got {show(audience)})")
        ok = False
    for key, val in (("issuer", issuer), ("subject", subject), ("audience", audience)):
        if isinstance(val, str) and len(val) > VALUE_MAX:
            r.fail(f"{where}.{key}", f"is {len(val)} characters; Graph allows at most {VALUE_MAX}")
            ok = False
    description = item.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > VALUE_MAX):
        r.fail(f"{where}.description", f"must be text of at most {VALUE_MAX} characters")
        ok = False
    if not ok:
        return None
    return FederatedCredential(str(name), str(issuer), str(subject), str(audience), description)
