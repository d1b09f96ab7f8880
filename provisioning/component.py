"""The revoker application: app registration, service principal, admin consent, certificates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import pulumi
import pulumi_azuread as azuread
import pulumi_tls as tls

from provisioning.config import (
    FederatedCredential,
    GeneratedCertificate,
    ProvidedCertificate,
    StackConfig,
    certificate_common_name,
)
from provisioning.errors import ProvisioningError
from revoke_ops.facts import GRAPH_APP_ID, rfc3339, thumbprint, utc_seconds

__all__ = ["TYPE_TOKEN", "RevokerApp", "RevokerAppArgs"]

TYPE_TOKEN = "revoke-sessions:provisioning:RevokerApp"  # noqa: S105  # a Pulumi type token
#: The default app role: assigning a group to it lets its members sign in when assignment is required.
DEFAULT_ACCESS_ROLE = "00000000-0000-0000-0000-000000000000"
#: Redirect URI for azure-identity's interactive browser credential (any port is accepted on localhost).
LOCALHOST_REDIRECT = "http://localhost"


@dataclass(frozen=True)
class RevokerAppArgs:
    """Inputs of :class:`RevokerApp`: the validated stack configuration."""

    config: StackConfig


def _thumbprints(pem: str) -> dict[str, str]:
    return {"thumbprint": thumbprint(pem), "thumbprintSha256": thumbprint(pem, "sha256")}


class RevokerApp(pulumi.ComponentResource):
    """Registers the application that may revoke sign-in sessions in one tenant.

    Children: the Application, its ServicePrincipal, one AppRoleAssignment per application
    permission and principal (admin consent), a delegated permission grant per consent target
    (admin consent for scopes), an optional operators-group assignment, and one
    ApplicationCertificate per certificate slot (with a pulumi-tls key and certificate for
    generated slots), and one ApplicationFederatedIdentityCredential per federated credential.
    """

    client_id: pulumi.Output[str]
    application_object_id: pulumi.Output[str]
    service_principal_object_id: pulumi.Output[str]
    certificates: pulumi.Output[list[dict[str, Any]]]
    #: The federated credentials as the bundle lists them (public: no secret involved).
    federated_credentials: pulumi.Output[list[dict[str, Any]]]
    #: PEM of the newest generated slot's certificate, or None when every slot is supplied.
    certificate_pem: pulumi.Output[str] | None
    #: PKCS#8 PEM of the newest generated slot's private key (a secret), or None.
    private_key_pem: pulumi.Output[str] | None

    def __init__(self, name: str, args: RevokerAppArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        protected = pulumi.ResourceOptions(parent=self, protect=cfg.protect)

        # Looked up, never adopted: destroying this stack must not touch Microsoft Graph itself.
        graph = azuread.get_service_principal(client_id=GRAPH_APP_ID, opts=pulumi.InvokeOptions(parent=self))
        role_ids = {n: _lookup(graph.app_role_ids, n, "app role") for n in cfg.application_permissions}
        scope_ids = {
            n: _lookup(graph.oauth2_permission_scope_ids, n, "delegated scope") for n in cfg.delegated_permissions
        }
        owners = list(cfg.owners) or [azuread.get_client_config(opts=pulumi.InvokeOptions(parent=self)).object_id]

        resource_access: list[azuread.ApplicationRequiredResourceAccessResourceAccessArgsDict] = [
            {"id": i, "type": "Role"} for i in role_ids.values()
        ]
        resource_access += [{"id": i, "type": "Scope"} for i in scope_ids.values()]
        app = azuread.Application(
            f"{name}-app",
            display_name=cfg.display_name,
            sign_in_audience="AzureADMyOrg",
            owners=owners,
            prevent_duplicate_names=True,
            required_resource_accesses=[{"resource_app_id": GRAPH_APP_ID, "resource_accesses": resource_access}],
            # Delegated sign-in: a public client (no secret) with the device code flow enabled and a
            # localhost redirect for the interactive browser flow.
            fallback_public_client_enabled=cfg.delegated,
            public_client={"redirect_uris": [LOCALHOST_REDIRECT]} if cfg.delegated else None,
            notes="Managed by Pulumi (revoke-sessions): revokes users' sign-in sessions during incidents.",
            tags=["revoke-sessions", f"mode:{cfg.permission_mode}"],
            opts=protected,
        )
        sp = azuread.ServicePrincipal(
            f"{name}-sp",
            client_id=app.client_id,
            owners=owners,
            app_role_assignment_required=cfg.operators_group is not None,
            # No tags here: Graph merges the application's tags into the service principal's, so
            # any list set here reads back different and would show a diff on every run.
            opts=protected,
        )

        # Admin consent for application permissions: one assignment per permission and principal.
        # Grants are named by the object id they grant to, never by list position: a name that
        # moves when the list is reordered makes Pulumi create the new grant before deleting the
        # old one, and Graph refuses the duplicate with 409 (hashicorp/terraform-provider-azuread#690).
        # The alias is the name releases before this one gave by position, so a stack deployed by
        # them is renamed in place on its next `up` (as long as that `up` keeps the lists as they were).
        principals: list[tuple[str, pulumi.Input[str], str | None]] = [("app", sp.object_id, None)]
        principals += [(pid, pid, f"principal{i + 1}") for i, pid in enumerate(cfg.grant_to_principals)]
        for label, principal, old in principals:
            for perm, role_id in role_ids.items():
                azuread.AppRoleAssignment(
                    f"{name}-{label}-{perm}",
                    app_role_id=role_id,
                    principal_object_id=principal,
                    resource_object_id=graph.object_id,
                    opts=_renamed(child, f"{name}-{old}-{perm}" if old else None),
                )

        # Admin consent for delegated permissions (claim values are scope NAMES).
        if cfg.delegated:
            targets: list[tuple[str, str | None, str | None]] = [
                (user, user, f"user{i + 1}") for i, user in enumerate(cfg.delegated_consent_users)
            ]
            for label, user, old in targets or [("all", None, None)]:
                azuread.ServicePrincipalDelegatedPermissionGrant(
                    f"{name}-delegated-{label}",
                    service_principal_object_id=sp.object_id,
                    resource_service_principal_object_id=graph.object_id,
                    claim_values=list(scope_ids),
                    user_object_id=user,
                    opts=_renamed(child, f"{name}-delegated-{old}" if old else None),
                )
        if cfg.operators_group is not None:
            azuread.AppRoleAssignment(
                f"{name}-operators",
                app_role_id=DEFAULT_ACCESS_ROLE,
                principal_object_id=cfg.operators_group,
                resource_object_id=sp.object_id,
                opts=child,
            )

        entries: list[pulumi.Output[dict[str, Any]]] = []
        self.certificate_pem = None
        self.private_key_pem = None
        for slot in cfg.certificates:
            if isinstance(slot, GeneratedCertificate):
                entry, cert_pem, key_pem = self._generated(name, slot, cfg, app, child)
                # Rotation appends slots, so the newest generated slot is the one operators use.
                self.certificate_pem, self.private_key_pem = cert_pem, key_pem
            else:
                entry = self._provided(name, slot, app, child)
            entries.append(entry)

        self.client_id = app.client_id
        self.application_object_id = app.object_id
        self.service_principal_object_id = sp.object_id
        # Federated credentials: named by their Graph name, which is immutable (renaming replaces).
        federated: list[pulumi.Output[dict[str, Any]]] = []
        for fic in cfg.federated_credentials:
            resource = azuread.ApplicationFederatedIdentityCredential(
                f"{name}-fic-{fic.name}",
                application_id=app.id,
                display_name=fic.name,
                issuer=fic.issuer,
                subject=fic.subject,
                audiences=[fic.audience],
                description=fic.description,
                opts=child,
            )
            federated.append(resource.credential_id.apply(partial(_federated_entry, fic)))

        self.certificates = pulumi.Output.all(*entries)
        self.federated_credentials = pulumi.Output.all(*federated)
        self.register_outputs(
            {
                "clientId": self.client_id,
                "applicationObjectId": self.application_object_id,
                "servicePrincipalObjectId": self.service_principal_object_id,
                "certificates": self.certificates,
                "federatedCredentials": self.federated_credentials,
            }
        )

    def _generated(
        self,
        name: str,
        slot: GeneratedCertificate,
        cfg: StackConfig,
        app: azuread.Application,
        child: pulumi.ResourceOptions,
    ) -> tuple[pulumi.Output[dict[str, Any]], pulumi.Output[str], pulumi.Output[str]]:
        key = tls.PrivateKey(f"{name}-{slot.name}-key", algorithm="RSA", rsa_bits=slot.rsa_bits, opts=child)
        cert = tls.SelfSignedCert(
            f"{name}-{slot.name}-cert",
            private_key_pem=key.private_key_pem,
            subject={"common_name": certificate_common_name(cfg.display_name, slot.name)},
            validity_period_hours=slot.validity_days * 24,
            allowed_uses=["digital_signature", "client_auth"],
            opts=child,
        )
        # pulumi-tls writes validity_end_time with Go's MarshalText (local offset, nanoseconds), but
        # azuread reads end_date back from Graph as UTC whole seconds (Format(time.RFC3339)) and
        # end_date forces a new credential: pass it in that form, or every `up` replaces the
        # certificate. The X.509 notAfter is whole seconds, so truncating loses nothing.
        not_after = cert.validity_end_time.apply(utc_seconds)
        credential = azuread.ApplicationCertificate(
            f"{name}-{slot.name}",
            application_id=app.id,
            type="AsymmetricX509Cert",
            encoding="pem",
            value=cert.cert_pem,
            end_date=not_after,
            opts=child,
        )
        entry = pulumi.Output.all(cert.cert_pem, credential.key_id, not_after).apply(
            lambda v: {"slot": slot.name, "source": "generated", **_thumbprints(v[0]), "keyId": v[1], "notAfter": v[2]}
        )
        return entry, cert.cert_pem, pulumi.Output.secret(key.private_key_pem_pkcs8)

    def _provided(
        self, name: str, slot: ProvidedCertificate, app: azuread.Application, child: pulumi.ResourceOptions
    ) -> pulumi.Output[dict[str, Any]]:
        not_after = rfc3339(slot.not_after)
        credential = azuread.ApplicationCertificate(
            f"{name}-{slot.name}",
            application_id=app.id,
            type="AsymmetricX509Cert",
            encoding="pem",
            value=slot.pem,
            end_date=not_after,
            opts=child,
        )
        return credential.key_id.apply(
            lambda key_id: {
                "slot": slot.name,
                "source": "keyVault" if slot.key_vault_certificate else "provided",
                **({"keyVaultCertificate": slot.key_vault_certificate} if slot.key_vault_certificate else {}),
                **_thumbprints(slot.pem),
                "keyId": key_id,
                "notAfter": not_after,
            }
        )


def _federated_entry(fic: FederatedCredential, credential_id: str) -> dict[str, Any]:
    return {**fic.to_bundle(), "credentialId": credential_id}


def _renamed(opts: pulumi.ResourceOptions, old_name: str | None) -> pulumi.ResourceOptions:
    """``opts`` with an alias from ``old_name`` (same type and parent), when there is one."""
    if old_name is None:
        return opts
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(name=old_name)]))


def _lookup(ids: Mapping[str, str] | None, name: str, kind: str) -> str:
    try:
        return (ids or {})[name]
    except KeyError:
        raise ProvisioningError(
            f"the Microsoft Graph service principal in this tenant has no {kind} named {name}"
        ) from None
