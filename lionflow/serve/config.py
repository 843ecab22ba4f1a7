"""``lionflow serve --config FILE``: the models to serve and the server's settings in a TOML file.

::

    [server]                       # all optional; command-line flags win over these
    host = "127.0.0.1"
    port = 8000
    api_key_env = "LIONFLOW_API_KEYS"   # the variable holding the clients' keys, comma-separated
    resume_grace = 5.0
    resume_ttl = 600.0
    db = "serve.db"                     # record answers and keep streams (lionflow serve --db)
    rate_limit = "60/minute"            # per key (per client address without keys)
    transport = "native"                # the models' default transport (lionflow serve --transport)

    [[models]]
    name = "gpt"
    provider = "openai"
    model = "gpt-4o-mini"
    api_key_env = "OPENAI_API_KEY"      # optional: where this model's key is (never the key itself)
    temperature = 0.2                   # any other iModel keyword

    [flows]                             # served at POST /v1/flows/NAME/runs (lionflow serve --flow)
    research = "research.py"            # a file defining build(session) -> Builder, relative to this file

Keys stay out of the file: a model's ``api_key`` is refused, ``api_key_env`` names the variable.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lionflow.errors import ConfigurationError
from lionflow.services.imodel import iModel
from lionflow.services.providers import provider_class

_SERVER_KEYS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "port": int,
    "api_key_env": str,
    "resume_grace": (int, float),
    "resume_ttl": (int, float),
    "max_body_bytes": int,
    "ping_interval": (int, float),
    "db": str,
    "rate_limit": str,
    "transport": str,
}


@dataclass(frozen=True)
class ServeConfig:
    """A configuration file, read: the server's settings as given, and the models' keyword sets."""

    server: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    flows: dict[str, Path] = field(default_factory=dict)

    def build_models(self, *, transport: str = "sdk") -> list[iModel]:
        """The models, built (an `api_key_env` read from the environment now); a model that names
        no ``transport`` of its own gets `transport` where its provider has it (see `served_transport`)."""
        built = []
        for position, entry in enumerate(self.models):
            options = dict(entry)
            if "transport" not in options:
                options["transport"] = served_transport(
                    options["provider"], options.get("endpoint"), transport
                )
            variable = options.pop("api_key_env", None)
            if variable is not None:
                key = os.environ.get(variable)
                if not key:
                    raise ConfigurationError(f"models[{position}]: the variable {variable} holds no key")
                options["api_key"] = key
            built.append(iModel(**options))
        return built


def served_transport(provider: str, endpoint: str | None, transport: str) -> str:
    """The transport a served model gets from the server's default `transport`: that one where the
    provider has it, else the provider's own (a local or scripted model reaches no provider, and
    keeps serving beside natively reached ones)."""
    if transport not in ("sdk", "native"):
        raise ConfigurationError(f"transport must be 'sdk' or 'native', not {transport!r}")
    adapter = provider_class(provider).for_endpoint(endpoint)
    return transport if transport == adapter.transport or adapter.native is not None else adapter.transport


def load_config(path: str | Path) -> ServeConfig:
    """Read and check `path`; `ConfigurationError` saying what and where for anything wrong."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the configuration {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"server", "models", "flows"}
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown tables {sorted(unknown)}; expected [server], [[models]] and [flows]"
        )
    server = data.get("server", {})
    if not isinstance(server, dict):
        raise ConfigurationError(f"{path}: [server] must be a table")
    for key, value in server.items():
        kind = _SERVER_KEYS.get(key)
        if kind is None:
            raise ConfigurationError(
                f"{path}: [server] has no setting {key!r}; known: {', '.join(_SERVER_KEYS)}"
            )
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigurationError(f"{path}: [server] {key} = {value!r} has the wrong type")
    models = data.get("models", [])
    if not isinstance(models, list) or not all(isinstance(entry, dict) for entry in models):
        raise ConfigurationError(f"{path}: models must be an array of tables ([[models]])")
    for position, entry in enumerate(models):
        missing = [key for key in ("name", "provider", "model") if not isinstance(entry.get(key), str)]
        if missing:
            raise ConfigurationError(f"{path}: models[{position}] needs {', '.join(missing)} (strings)")
        if "api_key" in entry:
            raise ConfigurationError(
                f"{path}: models[{position}] has an api_key; keep keys out of files: "
                "api_key_env names the variable that holds it"
            )
    return ServeConfig(
        server=dict(server), models=[dict(entry) for entry in models], flows=_flows(path, data)
    )


def _flows(path: str | Path, data: dict[str, Any]) -> dict[str, Path]:
    # Relative to the configuration, not to wherever the server is started from.
    flows = data.get("flows", {})
    if not isinstance(flows, dict):
        raise ConfigurationError(f'{path}: [flows] must be a table of name = "file.py"')
    folder = Path(path).parent
    files: dict[str, Path] = {}
    for name, file in flows.items():
        if not isinstance(file, str) or not file or not name or "/" in name:
            raise ConfigurationError(
                f"{path}: [flows] {name} = {file!r}: expected a name without '/' = \"file.py\""
            )
        files[name] = folder / file
    return files
