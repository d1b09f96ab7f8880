"""The acceptance lifecycle against a real tenant (issue 9 C), like the azuread provider's TF_ACC tests.

Everything a user would do, in order, with the real tools: provision a throwaway stack with the
real Pulumi CLI (local backend in a temporary directory, passphrase secrets provider), export the
bundle, check that a second run proposes no changes (``pulumi preview --expect-no-changes``), wait for
consent with ``revoke-ops doctor --wait``, revoke a disposable test user by id, by
UPN, through a group and from a file (every revoke-ops run sends JSON ``$batch`` requests), check
that the user's ``signInSessionsValidFromDateTime`` moved (read independently with msgraph-sdk and
the app's own User.Read.All), optionally revoke the test user's own sessions through delegated
device code, then ``pulumi destroy`` and ``pulumi stack rm`` whatever happened before.

Each step as the sources describe it: Graph's user: revokeSignInSessions (any 2xx is success;
"a small delay of a few minutes" before it takes effect, hence the polling) and the user resource
(signInSessionsValidFromDateTime is returned only with $select, readable with User.Read.All);
Pulumi CLI reference (``stack init --secrets-provider passphrase``, ``config set --path``,
``stack output --json --show-secrets``, ``destroy``/``stack rm``; a ``file://`` backend through
PULUMI_BACKEND_URL); the azuread provider's ARM_* variables for the deployer's credential.

Opt-in `contain` steps (a cloud-only user disabled, revoked and undone; a synced user refused by
Graph and still revoked) are in :mod:`tests.acceptance.containment`.

Size (~460 lines): one lifecycle whose steps share its commands, report and cleanup.

Configured only from the environment (:data:`VARIABLES`); :func:`skip_reason` says what to set
when it is not. Nothing here knows about the sandbox: the harness tests point the same code at a
fake ``pulumi`` executable and the sandbox tenant.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from revoke_ops.facts import CLOUDS
from tests.acceptance.settings import AcceptanceError, Settings, redact, valid_from_moved, wants_containment

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Step:
    name: str
    status: str  # ok | failed | skipped
    detail: str = ""


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)
    workdir: Path | None = None
    kept: bool = False  # the workdir (and its Pulumi state) was kept because cleanup failed

    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def text(self) -> str:
        lines = [f"{s.status.upper():<8}{s.name}{': ' + s.detail if s.detail else ''}" for s in self.steps]
        if self.kept and self.workdir:
            lines.append(f"KEPT    {self.workdir} (Pulumi state of a stack that could not be destroyed)")
        return "\n".join(lines)


#: Reads a user's signInSessionsValidFromDateTime with the bundle's credentials (``None``: unset).
ValidFromReader = Callable[[dict[str, Any], str], "datetime | None"]
#: Reads a user's accountEnabled with the bundle's credentials (``None``: unreadable).
EnabledReader = Callable[[dict[str, Any], str], "bool | None"]


def read_valid_from(bundle: dict[str, Any], user_id: str) -> datetime | None:
    """GET /users/{id}?$select=signInSessionsValidFromDateTime with msgraph-sdk, as the provisioned app."""
    user = asyncio.run(_read_user(bundle, user_id, "signInSessionsValidFromDateTime"))
    value = user.sign_in_sessions_valid_from_date_time if user else None
    return value.astimezone(UTC) if value else None


def read_account_enabled(bundle: dict[str, Any], user_id: str) -> bool | None:
    """GET /users/{id}?$select=accountEnabled with msgraph-sdk, as the provisioned app."""
    user = asyncio.run(_read_user(bundle, user_id, "accountEnabled"))
    value = user.account_enabled if user else None
    return value if isinstance(value, bool) else None


async def _read_user(bundle: dict[str, Any], user_id: str, field_name: str) -> Any:
    from azure.identity.aio import CertificateCredential
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
    from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph.graph_service_client import GraphServiceClient

    pem = (bundle["privateKeyPem"] + "\n" + bundle["certificatePem"]).encode()
    verify = os.environ.get("SSL_CERT_FILE")
    credential = CertificateCredential(
        bundle["tenantId"],
        bundle["clientId"],
        certificate_data=pem,
        authority=bundle["authorityHost"],
        **({"connection_verify": verify} if verify else {}),
    )
    try:
        host = urlsplit(bundle["graphEndpoint"]).hostname or ""
        auth = AzureIdentityAuthenticationProvider(credential, scopes=[bundle["graphScope"]], allowed_hosts=[host])
        adapter = GraphRequestAdapter(auth)
        adapter.base_url = bundle["graphEndpoint"].rstrip("/")
        client = GraphServiceClient(request_adapter=adapter)
        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=["id", field_name])
        return await client.users.by_user_id(user_id).get(RequestConfiguration(query_parameters=query))
    finally:
        await credential.close()


class Lifecycle:
    """One acceptance run: a throwaway stack, the revocation steps, and cleanup that always runs."""

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        project_dir: Path = ROOT,
        workdir: Path | None = None,
        revoke_ops: str | None = None,
        read: ValidFromReader = read_valid_from,
        read_enabled: EnabledReader = read_account_enabled,
        poll: float = 10.0,
        log: Callable[[str], None] | None = None,
        timeout: float = 1800.0,
    ) -> None:
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.project_dir = project_dir
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="revoke-acc-"))
        self.revoke_ops = revoke_ops or str(Path(sys.executable).parent / "revoke-ops")
        self.read = read
        self.read_enabled = read_enabled
        self.poll = poll
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.timeout = timeout
        self.stack = f"acc-{uuid.uuid4().hex[:8]}"
        self.project = self.workdir / "project"
        self.bundle_path = self.workdir / "bundle.json"
        self.report = Report(workdir=self.workdir)
        self._bundle: dict[str, Any] = {}
        self._last_valid_from: datetime | None = None

    # -- running commands ---------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(self.environ)
        # A local backend in the workdir: nothing of the operator's own Pulumi login is touched.
        env["PULUMI_BACKEND_URL"] = (self.workdir / "state").as_uri()
        env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
        return env

    def _run(
        self, step: str, command: list[str], *, interactive: bool = False, accept: tuple[int, ...] = (0,)
    ) -> subprocess.CompletedProcess[str]:
        env = self._env()
        self.log(f"acceptance: {step}: {' '.join(command[:4])} ...")
        try:
            # Interactive (device code): the prompt on stderr goes to the operator's terminal.
            result = subprocess.run(  # the operator's pulumi and our revoke-ops
                command,
                cwd=self.project,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=None if interactive else subprocess.PIPE,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise AcceptanceError(f"{step}: {command[0]} could not run: {redact(str(err), env)}") from None
        if result.returncode not in accept:
            output = redact(((result.stderr or "") + (result.stdout or "")).strip(), env)
            tail = "\n".join(output.splitlines()[-15:])
            raise AcceptanceError(f"{step}: `{' '.join(command[:3])}` exited {result.returncode}:\n{tail}")
        return result

    def _pulumi(self, step: str, *args: str) -> subprocess.CompletedProcess[str]:
        found = shutil.which("pulumi", path=self.environ.get("PATH"))
        if not found:
            raise AcceptanceError(
                f"{step}: no `pulumi` on PATH: install the Pulumi CLI (https://www.pulumi.com/docs/install/)"
            )
        return self._run(step, [found, *args, "--non-interactive"])

    def _ops(
        self, step: str, *args: str, interactive: bool = False, accept: tuple[int, ...] = (0,)
    ) -> subprocess.CompletedProcess[str]:
        return self._run(step, [self.revoke_ops, *args], interactive=interactive, accept=accept)

    def bulk_run(
        self, step: str, command: str, *args: str, journal: Path, accept: tuple[int, ...] = (0,)
    ) -> subprocess.CompletedProcess[str]:
        """``revoke-ops revoke|contain`` with the stack's bundle, no question, the step as reason, a journal."""
        reason = f"revoke-sessions acceptance test ({step})"
        return self._ops(
            step, command, *args, "--credentials", str(self.bundle_path), "--yes", "--reason", reason,
            "--journal", str(journal), "--output", "json", accept=accept,
        )  # fmt: skip

    def _step(self, name: str, action: Callable[[], str]) -> None:
        try:
            detail = action()
        except AcceptanceError as err:
            self.report.steps.append(Step(name, "failed", str(err).splitlines()[0]))
            raise
        except Exception as err:
            self.report.steps.append(Step(name, "failed", f"{type(err).__name__}: {err}"))
            raise AcceptanceError(f"{name}: {type(err).__name__}: {redact(str(err), self.environ)}") from err
        self.report.steps.append(Step(name, "ok", detail))

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> Report:
        """Every step in order; destroy and stack rm always. Raises the first failure after cleanup.

        :raises AcceptanceError: the first failing step (and any cleanup failure), by name.
        """
        failure: AcceptanceError | None = None
        initialised = False
        try:
            self._step("copy project", self.copy_project)
            self._step("stack init", self.stack_init)
            initialised = True
            self._step("config", self.configure)
            self._step("pulumi up", self.up)
            self._step("preview: no changes", self.preview_no_changes)
            self._step("bundle", self.export_bundle)
            self._step("doctor --wait", self.doctor)
            self._step("revoke by id", lambda: self.revoke("revoke by id", "--user", self.settings.user_id))
            self._step("revoke by UPN", lambda: self.revoke("revoke by UPN", "--user", self.settings.user_upn))
            if self.settings.group_id:
                self._step(
                    "revoke through group",
                    lambda: self.revoke("revoke through group", "--group", str(self.settings.group_id)),
                )
            else:
                self.report.steps.append(Step("revoke through group", "skipped", "REVOKE_ACC_GROUP_ID not set"))
            self._step("revoke from a file ($batch)", self.revoke_from_file)
            if self.settings.device_code:
                self._step("delegated device code", self.device_code)
            else:
                self.report.steps.append(Step("delegated device code", "skipped", "REVOKE_ACC_DEVICE_CODE not set"))
            from tests.acceptance.containment import contain_cloud_user, contain_synced_user

            if self.settings.contain:
                self._step("contain a cloud-only user", lambda: contain_cloud_user(self))
            else:
                self.report.steps.append(Step("contain a cloud-only user", "skipped", "REVOKE_ACC_CONTAIN not set"))
            if self.settings.synced_user_id:
                self._step("contain a synced user", lambda: contain_synced_user(self))
            else:
                self.report.steps.append(Step("contain a synced user", "skipped", "REVOKE_ACC_SYNCED_USER_ID not set"))
        except AcceptanceError as err:
            failure = err
        finally:
            cleanup = self.cleanup(initialised)
        problems = [str(e) for e in (failure, cleanup) if e is not None]
        if problems:
            raise AcceptanceError("\n".join([*problems, self.report.text()]))
        return self.report

    def cleanup(self, initialised: bool) -> AcceptanceError | None:
        """``pulumi destroy``, then ``stack rm`` only if destroy succeeded (else keep the state)."""
        if not initialised:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return None
        try:
            self._step("pulumi destroy", self.destroy)
        except AcceptanceError as err:
            self.report.kept = True
            return AcceptanceError(
                f"{err}\nThe stack {self.stack} was NOT removed: its state is kept in {self.workdir / 'state'}. "
                f"Delete the app registration '{self.display_name}' in the tenant, or run "
                f"`PULUMI_BACKEND_URL={(self.workdir / 'state').as_uri()} pulumi destroy --stack {self.stack}` "
                f"in {self.project}"
            )
        try:
            self._step("stack rm", self.stack_rm)
        except AcceptanceError as err:
            self.report.kept = True
            return err
        shutil.rmtree(self.workdir, ignore_errors=True)
        return None

    def destroy(self) -> str:
        self._pulumi("pulumi destroy", "destroy", "--stack", self.stack, "--yes")
        return self.stack

    def stack_rm(self) -> str:
        self._pulumi("stack rm", "stack", "rm", self.stack, "--yes")
        return self.stack

    @property
    def display_name(self) -> str:
        return f"revoke-sessions acceptance {self.stack}"

    # -- steps --------------------------------------------------------------------------------
    def copy_project(self) -> str:
        """A copy of the Pulumi project, so the stack file never lands in the checkout's stacks/."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        self.project.mkdir()
        (self.project / "stacks").mkdir()
        for name in ("__main__.py", "requirements.txt"):
            shutil.copy2(self.project_dir / name, self.project / name)
        for package in ("provisioning", "revoke_ops"):
            shutil.copytree(
                self.project_dir / package, self.project / package, ignore=shutil.ignore_patterns("__pycache__")
            )
        # The project's own virtualenv (created by scripts/bootstrap from the same lock).
        venv = self.project_dir / ".venv"
        text = (self.project_dir / "Pulumi.yaml").read_text("utf-8")
        (self.project / "Pulumi.yaml").write_text(text.replace("virtualenv: .venv", f"virtualenv: {venv}"), "utf-8")
        return str(self.project)

    def stack_init(self) -> str:
        self._pulumi("stack init", "stack", "init", self.stack, "--secrets-provider", "passphrase")
        return self.stack

    def configure(self) -> str:
        s = self.settings
        cloud = CLOUDS[s.cloud]
        values: list[tuple[str, str]] = [
            ("azuread:tenantId", s.tenant_id),
            ("azuread:environment", cloud.azuread_environments[-1]),
            ("revoke-sessions:cloud", s.cloud),
            ("revoke-sessions:displayName", self.display_name),
            ("revoke-sessions:permissionMode", "both" if s.device_code else "application"),
        ]
        reads = ["User.Read.All", *(["GroupMember.Read.All"] if s.group_id else [])]
        contain = ["User.EnableDisableAccount.All"] if wants_containment(s) else []
        for key, value in values:
            self._pulumi("config", "config", "set", "--stack", self.stack, key, value)
        for key, listed in (("readPermissions", reads), ("containmentPermissions", contain)):
            for n, permission in enumerate(listed):
                path = f"revoke-sessions:{key}[{n}]"
                self._pulumi("config", "config", "set", "--stack", self.stack, "--path", path, permission)
        return f"cloud {s.cloud}, permissions User.RevokeSessions.All + {', '.join([*reads, *contain])}"

    def up(self) -> str:
        self._pulumi("pulumi up", "up", "--stack", self.stack, "--yes")
        return self.display_name

    def preview_no_changes(self) -> str:
        """Right after ``up`` the program must propose nothing: what it sends is what the providers read back.

        Here the real providers show what the mocks can only model (issue 9 A2/A4): a certificate
        ``end_date`` (force-new) that differs from azuread's UTC whole-second read-back would be a
        replacement on every ``up``, service-principal tags a diff (Graph returns the app's too).
        ``--expect-no-changes``: "Return an error if any changes are proposed by this preview";
        ``--diff`` shows what changed in the step's message.
        """
        self._pulumi("preview: no changes", "preview", "--stack", self.stack, "--expect-no-changes", "--diff")
        return "a second run proposes no changes (no certificate replaced, no tags diff)"

    def export_bundle(self) -> str:
        out = self._pulumi("bundle", "stack", "output", "--stack", self.stack, "--json", "--show-secrets").stdout
        try:
            self._bundle = json.loads(out)
        except ValueError:
            raise AcceptanceError("bundle: `pulumi stack output --json` did not print JSON") from None
        fd = os.open(self.bundle_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(out)
        self._ops("bundle", "bundle", "check", str(self.bundle_path))
        return f"client id {self._bundle.get('clientId')}"

    def doctor(self) -> str:
        self._ops(
            "doctor --wait",
            "doctor",
            "--credentials",
            str(self.bundle_path),
            "--wait",
            f"{self.settings.consent_wait:g}",
        )
        return "token carries the granted permissions"

    def valid_from_before(self, user: str) -> datetime | None:
        """The user's signInSessionsValidFromDateTime, read once the clock is past its second."""
        before = self.read(self._bundle, user)
        # signInSessionsValidFromDateTime has whole seconds: never revoke twice in the same second.
        while datetime.now(UTC) < (before or datetime.min.replace(tzinfo=UTC)) + timedelta(seconds=1.5):
            time.sleep(0.2)
        return before

    def _revoke_and_check(self, step: str, args: list[str]) -> str:
        user = self.settings.user_id
        before = self.valid_from_before(user)
        journal = self.workdir / f"journal-{step.replace(' ', '-')}.jsonl"
        sent = datetime.now(UTC)
        self.bulk_run(step, "revoke", *args, journal=journal)
        outcomes = {
            r.get("id"): r.get("outcome")
            for r in map(json.loads, journal.read_text("utf-8").splitlines())
            if r.get("type") == "outcome"
        }
        if outcomes.get(user) != "revoked":
            raise AcceptanceError(
                f"{step}: the journal says {outcomes.get(user)!r} for the test user {user}, not revoked"
            )
        after = self._await_moved(step, before, sent)
        self._ops(step, "verify", "--credentials", str(self.bundle_path), "--journal", str(journal))
        return f"{len(outcomes)} user(s) revoked; signInSessionsValidFromDateTime {before} -> {after}; verify ok"

    def _await_moved(
        self, step: str, before: datetime | None, sent: datetime, user: str | None = None
    ) -> datetime | None:
        """Poll until the revocation shows (Graph: "a small delay of a few minutes" is possible)."""
        user = user or self.settings.user_id
        deadline = time.monotonic() + self.settings.settle
        after = self.read(self._bundle, user)
        while not valid_from_moved(before, after, sent) and time.monotonic() < deadline:
            time.sleep(self.poll)
            after = self.read(self._bundle, user)
        if not valid_from_moved(before, after, sent):
            raise AcceptanceError(
                f"{step}: signInSessionsValidFromDateTime of {user} did not move within {self.settings.settle:g} s "
                f"(before {before}, after {after}, revocation sent {sent:%Y-%m-%dT%H:%M:%SZ})"
            )
        return after

    def revoke(self, step: str, *args: str) -> str:
        return self._revoke_and_check(step, list(args))

    def revoke_from_file(self) -> str:
        listing = self.workdir / "targets.txt"
        listing.write_text(f"{self.settings.user_id}\n{self.settings.user_upn}\n", "utf-8")
        return self._revoke_and_check("revoke from a file", ["--from-file", str(listing)])

    def device_code(self) -> str:
        user = self.settings.user_id
        before = self.read(self._bundle, user)
        sent = datetime.now(UTC)
        self.log(f"acceptance: sign in as {self.settings.user_upn} when revoke-ops shows a device code")
        self._ops(
            "device code", "me", "--delegated", "device-code", "--credentials", str(self.bundle_path), interactive=True
        )
        after = self._await_moved("delegated device code", before, sent)
        return f"`revoke-ops me` as {self.settings.user_upn}; {before} -> {after}"
