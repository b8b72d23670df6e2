"""Adapters that reach targets over HTTP: the simulator's remediation API and generic webhooks.

Both send the idempotency key as a header, classify failures (timeouts, connection errors, 5xx,
408, 429 are transient; other 4xx and redirects are permanent) and never follow redirects: a
request goes only where configuration says. The webhook adapter builds its request from
configuration and typed parameters only; secrets come from the environment or files and are
scrubbed from every outcome and error.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain import ActionName, ActionOutcome, OutcomeStatus
from tools._catalog import CATALOG
from tools._errors import PermanentError, TransientError
from tools._guard import ActionRequest

_TRANSIENT_STATUS = frozenset({408, 425, 429})
_REDACTED = "[redacted]"


def _check_http_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{where}: expected an absolute http(s) URL, got {url!r}")
    return url


def _classify_status(response: httpx.Response, what: str, scrub: Callable[[str], str]) -> None:
    """Raise the right error for a non-2xx answer."""
    code = response.status_code
    if 200 <= code < 300:
        return
    snippet = scrub(response.text[:200]) if response.content else ""
    message = f"{what}: HTTP {code}" + (f": {snippet}" if snippet else "")
    if code >= 500 or code in _TRANSIENT_STATUS:
        raise TransientError(message)
    if 300 <= code < 400:
        raise PermanentError(f"{what}: HTTP {code} redirect refused (requests go only to the configured URL)")
    raise PermanentError(message)


# --------------------------------------------------------------------------------------------
# The simulator's remediation API
# --------------------------------------------------------------------------------------------


class SimulatorHttpAdapter:
    """Calls the simulator's remediation endpoints (POST /actions, GET /actions/{key})."""

    def __init__(self, base_url: str, *, timeout_s: float = 5.0, transport: httpx.BaseTransport | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError(f"SimulatorHttpAdapter timeout_s must be > 0 seconds, got {timeout_s}")
        self._base = _check_http_url(base_url, "SimulatorHttpAdapter base_url").rstrip("/")
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SimulatorHttpAdapter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, request: ActionRequest) -> ActionOutcome:
        body = {
            "action": request.action.value,
            "target": request.target,
            "parameters": request.parameters,
            "idempotency_key": request.idempotency_key,
        }
        what = f"simulator {request.action.value} on {request.target!r}"
        try:
            response = self._client.post(
                f"{self._base}/actions", json=body, headers={"Idempotency-Key": request.idempotency_key}
            )
        except httpx.TimeoutException as exc:
            raise TransientError(f"{what}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{what}: cannot reach the simulator ({type(exc).__name__}: {exc})") from None
        _classify_status(response, what, str)
        return self._outcome(response, request.idempotency_key, what)

    def lookup(self, idempotency_key: str) -> ActionOutcome | None:
        what = f"simulator lookup of {idempotency_key}"
        try:
            response = self._client.get(f"{self._base}/actions/{quote(idempotency_key, safe='')}")
        except httpx.TimeoutException as exc:
            raise TransientError(f"{what}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{what}: cannot reach the simulator ({type(exc).__name__}: {exc})") from None
        if response.status_code == 404:
            return None
        _classify_status(response, what, str)
        return self._outcome(response, idempotency_key, what)

    @staticmethod
    def _outcome(response: httpx.Response, key: str, what: str) -> ActionOutcome:
        try:
            data = response.json()
        except ValueError:
            raise PermanentError(f"{what}: answer is not JSON") from None
        if not isinstance(data, dict):
            raise PermanentError(f"{what}: answer is not a JSON object")
        echoed = data.get("idempotency_key")
        if echoed is not None and echoed != key:
            raise PermanentError(f"{what}: the simulator answered for key {echoed!r}, not {key!r}")
        status = data.get("status")
        mapped = {"applied": OutcomeStatus.SUCCEEDED, "duplicate": OutcomeStatus.SUCCEEDED}.get(str(status))
        if status == "rejected":
            mapped = OutcomeStatus.FAILED
        if mapped is None:
            raise PermanentError(f"{what}: unexpected status {status!r} (expected applied, duplicate or rejected)")
        effect = data.get("effect") or {}
        detail = str(data.get("detail") or status)
        return ActionOutcome(
            status=mapped,
            idempotency_key=key,
            detail=detail if status != "duplicate" else f"duplicate: {detail}",
            effect=effect if isinstance(effect, dict) else {"effect": effect},
        )


# --------------------------------------------------------------------------------------------
# Generic webhooks
# --------------------------------------------------------------------------------------------


class SecretRef(BaseModel):
    """Where a secret comes from: an environment variable or a file. Never a literal value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: Path | None = None
    prefix: str = Field(default="", max_length=40, description="e.g. 'Bearer ' before the secret")

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret needs exactly one of 'env' (variable name) or 'file' (path)")
        return self

    def resolve(self, env: Mapping[str, str], where: str) -> str:
        if self.env is not None:
            value = env.get(self.env)
            if not value:
                raise PermanentError(f"{where}: environment variable {self.env} is not set")
            return value
        assert self.file is not None
        try:
            value = self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PermanentError(f"{where}: cannot read secret file {self.file} ({exc.strerror})") from None
        if not value:
            raise PermanentError(f"{where}: secret file {self.file} is empty")
        return value


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")
_FIXED_FIELDS = frozenset({"action", "target", "idempotency_key", "incident_id", "parameters"})


def _default_body() -> dict[str, Any]:
    return {
        "action": "{{action}}",
        "target": "{{target}}",
        "parameters": "{{parameters}}",
        "idempotency_key": "{{idempotency_key}}",
        "incident_id": "{{incident_id}}",
    }


class WebhookTarget(BaseModel):
    """One configured endpoint: which actions on which targets it serves, and how to call it.

    The URL, method and headers are fixed here; the body is a JSON template whose strings may
    hold placeholders `{{action}}`, `{{target}}`, `{{idempotency_key}}`, `{{incident_id}}`,
    `{{parameters}}` (the typed parameters as an object) and `{{params.<field>}}`. A string that
    is exactly one placeholder takes the value's JSON type. Nothing else reaches the request.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="target name or glob this endpoint serves")
    actions: tuple[ActionName, ...] = Field(min_length=1)
    url: str | None = Field(default=None, description="the endpoint; fixed, never templated")
    url_secret: SecretRef | None = Field(default=None, description="the endpoint, when the URL itself is a secret")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict, description="non-secret literal headers")
    secret_headers: dict[str, SecretRef] = Field(default_factory=dict)
    body: dict[str, Any] = Field(default_factory=_default_body)
    idempotency_header: str = "Idempotency-Key"
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    retries: int = Field(
        default=0, ge=0, le=10, description="extra attempts on transient errors (the guard retries too)"
    )
    backoff_s: float = Field(default=0.5, ge=0, le=60)
    status_url: str | None = Field(
        default=None, description="GET template with {idempotency_key}: 2xx = done, 404 = not done"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "url")

    @field_validator("status_url")
    @classmethod
    def _status_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.count("{idempotency_key}") != 1 or re.search(r"\{(?!idempotency_key\})", value):
            raise ValueError("status_url must contain {idempotency_key} exactly once and no other placeholder")
        return _check_http_url(value.replace("{idempotency_key}", "key"), "status_url") and value

    @model_validator(mode="after")
    def _consistent(self) -> WebhookTarget:
        if (self.url is None) == (self.url_secret is None):
            raise ValueError("give exactly one of 'url' or 'url_secret'")
        overlap = {h.lower() for h in self.headers} & {h.lower() for h in self.secret_headers}
        if overlap:
            raise ValueError(f"headers set both literally and as secrets: {sorted(overlap)}")
        for name in _placeholders(self.body):
            if name in _FIXED_FIELDS:
                continue
            field = name.removeprefix("params.")
            if field == name or "." in field:
                raise ValueError(
                    f"body placeholder {{{{{name}}}}} is unknown (use action, target, idempotency_key, "
                    "incident_id, parameters or params.<field>)"
                )
            for action in self.actions:
                if field not in CATALOG[action].params_model.model_fields:
                    raise ValueError(f"body placeholder {{{{{name}}}}}: {action.value} has no parameter {field!r}")
        return self

    def serves(self, request: ActionRequest) -> bool:
        return request.action in self.actions and fnmatch.fnmatchcase(request.target, self.name)


def _placeholders(template: Any) -> list[str]:
    if isinstance(template, str):
        return _PLACEHOLDER.findall(template)
    if isinstance(template, dict):
        return [n for v in template.values() for n in _placeholders(v)]
    if isinstance(template, list):
        return [n for v in template for n in _placeholders(v)]
    return []


def _fill(template: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template.strip())
        if whole:
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: _as_text(values[m.group(1)]), template)
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


class WebhookAdapter:
    """Calls per-target webhooks built only from configuration and typed parameters."""

    def __init__(
        self,
        targets: Sequence[WebhookTarget],
        *,
        env: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not targets:
            raise ValueError("WebhookAdapter needs at least one WebhookTarget")
        self._targets = tuple(targets)
        self._env = env if env is not None else os.environ
        self._client = httpx.Client(follow_redirects=False, transport=transport)
        self._sleep = sleep

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> WebhookAdapter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, request: ActionRequest) -> ActionOutcome:
        target = next((t for t in self._targets if t.serves(request)), None)
        what = f"webhook {request.action.value} on {request.target!r}"
        if target is None:
            raise PermanentError(f"{what}: no webhook target is configured for it")
        secrets = self._secrets(target, what)
        scrub = _scrubber(secrets.values())
        try:
            url = secrets.get("__url__") or target.url
            assert url is not None
            headers = {**target.headers, **{h: v for h, v in secrets.items() if h != "__url__"}}
            headers[target.idempotency_header] = request.idempotency_key
            params = CATALOG[request.action].validate_params(request.parameters)
            values: dict[str, Any] = {
                "action": request.action.value,
                "target": request.target,
                "idempotency_key": request.idempotency_key,
                "incident_id": request.incident_id,
                "parameters": params.model_dump(mode="json"),
                **{f"params.{k}": v for k, v in params.model_dump(mode="json").items()},
            }
            body = _fill(target.body, values)
            response = self._send(
                target, method=target.method, url=url, headers=headers, body=body, what=what, scrub=scrub
            )
        except (TransientError, PermanentError) as exc:
            raise type(exc)(scrub(str(exc))) from None
        except Exception as exc:  # never let a secret ride out on an unexpected error
            raise PermanentError(scrub(f"{what}: {type(exc).__name__}: {exc}")) from None
        return ActionOutcome(
            status=OutcomeStatus.SUCCEEDED,
            idempotency_key=request.idempotency_key,
            detail=f"HTTP {response.status_code}",
            effect=_scrub_json(_json_object(response), scrub),
        )

    def lookup(self, idempotency_key: str) -> ActionOutcome | None:
        with_status = [t for t in self._targets if t.status_url]
        if not with_status:
            raise PermanentError("no webhook target has a status_url: cannot ask what was done")
        errors: list[str] = []
        for target in with_status:
            what = f"webhook lookup of {idempotency_key} at {target.name!r}"
            try:
                secrets = self._secrets(target, what)
            except PermanentError as exc:
                errors.append(str(exc))
                continue
            scrub = _scrubber(secrets.values())
            assert target.status_url is not None
            url = target.status_url.replace("{idempotency_key}", quote(idempotency_key, safe=""))
            headers = {**target.headers, **{h: v for h, v in secrets.items() if h != "__url__"}}
            try:
                response = self._send(
                    target, method="GET", url=url, headers=headers, body=None, what=what, scrub=scrub, not_found_ok=True
                )
            except (TransientError, PermanentError) as exc:
                errors.append(scrub(str(exc)))
                continue
            if response.status_code == 404:
                continue
            return ActionOutcome(
                status=OutcomeStatus.SUCCEEDED,
                idempotency_key=idempotency_key,
                detail=f"status HTTP {response.status_code}",
                effect=_scrub_json(_json_object(response), scrub),
            )
        if errors:
            raise TransientError("; ".join(errors))
        return None

    # ------------------------------------------------------------------------------------------

    def _secrets(self, target: WebhookTarget, what: str) -> dict[str, str]:
        resolved = {
            header: ref.prefix + ref.resolve(self._env, f"{what}: header {header}")
            for header, ref in target.secret_headers.items()
        }
        if target.url_secret is not None:
            url = target.url_secret.resolve(self._env, f"{what}: url")
            try:
                _check_http_url(url, "url")
            except ValueError:
                raise PermanentError(f"{what}: the secret URL is not an absolute http(s) URL") from None
            resolved["__url__"] = url
        return resolved

    def _send(
        self,
        target: WebhookTarget,
        *,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Any,
        what: str,
        scrub: Callable[[str], str],
        not_found_ok: bool = False,
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._client.request(method, url, headers=headers, json=body, timeout=target.timeout_s)
                if not (not_found_ok and response.status_code == 404):
                    _classify_status(response, what, scrub)
                return response
            except httpx.TimeoutException as exc:
                error = TransientError(f"{what}: timed out after {target.timeout_s}s ({type(exc).__name__})")
            except httpx.TransportError as exc:
                error = TransientError(f"{what}: cannot reach the endpoint ({type(exc).__name__})")
            except TransientError as exc:
                error = exc
            if attempt > target.retries:
                raise error
            self._sleep(target.backoff_s * (2 ** (attempt - 1)))


def _scrubber(secrets: Any) -> Callable[[str], str]:
    values = sorted({s for s in secrets if s}, key=len, reverse=True)
    # also scrub the bare secret behind a prefix such as "Bearer "
    values += [v.split(" ", 1)[1] for v in values if " " in v and len(v.split(" ", 1)[1]) >= 4]

    def scrub(text: str) -> str:
        for value in values:
            text = text.replace(value, _REDACTED)
        return text

    return scrub


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {"http_status": response.status_code}
    return data if isinstance(data, dict) else {"http_status": response.status_code, "body": data}


def _scrub_json(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(str(k)): _scrub_json(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_json(v, scrub) for v in value]
    return value
