"""Validated settings: ``buildprint.toml`` and ``packages/<name>.toml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from buildprint.errors import InputError, PolicyError
from buildprint.project.toml import line_of, read_toml
from buildprint.signature.policy import DepMode, Policy, VersionGranularity

__all__ = [
    "ExecutorTable",
    "PackageSettings",
    "ProjectSettings",
    "RemoteSettings",
    "SourceSpec",
    "executor_problem",
    "load_settings",
    "parse_size",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ProjectTable(_Strict):
    index_url: str | None = Field(None, alias="index-url")
    find_links: list[str] = Field(default_factory=list, alias="find-links")
    #: More indexes, searched with ``index-url``: every file of all of them is a candidate
    #: and the best version wins, as pip does (docs/sources.md, "Several indexes").
    extra_index_url: list[str] = Field(default_factory=list, alias="extra-index-url")
    requirements: str = "requirements.txt"
    wheelhouse: str = "wheelhouse"
    store: str = ".buildprint"
    python: str | None = None  # interpreter builds run with; default: the one running buildprint
    #: Build the whole closure from sdists: build and install requirements, recursively
    #: (``--from-source``); a package's ``prebuilt = true`` takes its index wheel instead.
    from_source: bool = Field(False, alias="from-source")
    #: Archive limits (decompression bombs): the most a source archive may unpack to, in
    #: bytes or "NNN KiB/MiB/GiB", and how many times its own size (past 64 MiB unpacked).
    max_unpacked_size: int = Field(1 << 30, alias="max-unpacked-size", gt=0)
    max_expansion_ratio: int = Field(200, alias="max-expansion-ratio", gt=0)
    #: Wheels of the run's packages superseded by what it placed: removed ("current"), or
    #: kept ("all": a wheelhouse other runs or interpreters fill too).
    wheelhouse_keep: Literal["current", "all"] = Field("current", alias="wheelhouse-keep")

    @field_validator("max_unpacked_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value)


def parse_size(value: Any) -> int:
    """A size in bytes: an integer, or a string "NNN", "NNN B/KiB/MiB/GiB/TiB" (``ValueError``
    otherwise): ``max-unpacked-size``, ``cache gc --max-size``."""
    if isinstance(value, str):
        units = {"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}
        number = value.strip().rstrip("BKMGTi").strip()
        unit = value.strip()[len(number) :].strip()
        if not number.isdigit() or unit not in units:
            raise ValueError(f"{value!r} is not a number of bytes or 'NNN KiB/MiB/GiB'")
        return int(number) << units[unit]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a number of bytes or 'NNN KiB/MiB/GiB'")
    return value


class SignatureTable(_Strict):
    host_hook: str | None = Field(None, alias="host-hook")
    env_pass_through: list[str] = Field(default_factory=list, alias="env-pass-through")

    @field_validator("host_hook")
    @classmethod
    def _module_colon_function(cls, value: str | None) -> str | None:
        if value is not None and (value.count(":") != 1 or not all(value.split(":"))):
            raise ValueError("must be 'module:function'")
        return value


class RemoteSettings(_Strict):
    """One ``[[remote]]``: where, whether to read and write, whose records to trust, and how
    long it may stall (seconds; ``timeout`` sets both, the specific keys win)."""

    url: str
    read: bool = True
    write: bool = False
    trusted_keys: list[str] = Field(default_factory=list, alias="trusted-keys")
    timeout: float | None = Field(None, gt=0, le=600)
    connect_timeout: float | None = Field(None, alias="connect-timeout", gt=0, le=600)
    read_timeout: float | None = Field(None, alias="read-timeout", gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _remote_url(cls, value: str) -> str:
        # Imported here: settings load on every plan, the store's remote module need not.
        from buildprint.store.remote import check_remote_url

        try:
            return check_remote_url(value)
        except InputError as exc:
            raise ValueError(exc.message) from None

    @field_validator("trusted_keys")
    @classmethod
    def _ed25519(cls, value: list[str]) -> list[str]:
        if value:
            # The parser records are verified with; imported only when there are keys to read.
            from buildprint.store.signing import parse_public_key

            for key in value:
                try:
                    parse_public_key(key)
                except InputError as exc:
                    raise ValueError(exc.message) from None
        return value


class ExecutorTable(_Strict):
    """``[executor]``: where builds run. Unset: on this machine; ``dask://HOST:PORT``: as
    tasks on that Dask scheduler's workers (docs/cluster.md)."""

    url: str | None = None
    #: Seconds to wait for the scheduler to answer when the first build is submitted.
    connect_timeout: float = Field(30.0, alias="connect-timeout", gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _dask_url(cls, value: str | None) -> str | None:
        if value is not None:
            problem = executor_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value


def executor_problem(url: str) -> str | None:
    """Why ``url`` cannot be an executor (``dask://HOST:PORT``), or None."""
    scheme, _, rest = url.partition("://")
    host, _, port = rest.rpartition(":")
    if scheme != "dask" or not host or not port.isdigit() or "/" in rest:
        return f"{url!r} is not an executor: write dask://HOST:PORT (a Dask scheduler)"
    return None


class ProjectSettings(_Strict):
    """``buildprint.toml``."""

    project: ProjectTable = Field(default_factory=lambda: ProjectTable.model_validate({}))
    signature: SignatureTable = Field(default_factory=lambda: SignatureTable.model_validate({}))
    remote: list[RemoteSettings] = Field(default_factory=list)
    executor: ExecutorTable = Field(default_factory=lambda: ExecutorTable.model_validate({}))


class SourceSpec(_Strict):
    path: str | None = None
    url: str | None = None
    sha256: str | None = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.removeprefix("sha256:").lower()
            if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise ValueError("must be 64 hex digits")
        return value

    def model_post_init(self, context: Any, /) -> None:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of 'path' or 'url'")
        if self.url is not None and self.sha256 is None:
            raise ValueError("a 'url' source needs its 'sha256'")


class PolicyTable(_Strict):
    clear: bool = False
    remove: list[str] = Field(default_factory=list)
    version: VersionGranularity | None = None
    configs: list[str] | None = None
    extra: dict[str, str] = Field(default_factory=dict)
    deps: dict[str, DepMode] = Field(default_factory=dict)
    discovered: bool = True
    discovered_ignore: list[str] = Field(default_factory=list, alias="discovered-ignore")

    @field_validator("discovered_ignore")
    @classmethod
    def _absolute_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.startswith("/"):
                raise ValueError(f"{pattern!r} is not an absolute path pattern")
        return value

    def policy(self) -> Policy:
        return Policy(
            clear=self.clear,
            remove=tuple(self.remove),
            version=self.version,
            configs=None if self.configs is None else tuple(self.configs),
            extra=dict(self.extra),
            deps=dict(self.deps),
            discovered=self.discovered,
            discovered_ignore=tuple(self.discovered_ignore),
        )


class PackageSettings(_Strict):
    """``packages/<name>.toml``: every key optional."""

    source: SourceSpec | None = None
    plugin: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    config_settings: dict[str, str | list[str]] = Field(
        default_factory=dict, alias="config-settings"
    )
    configs: dict[str, str] = Field(default_factory=dict)
    reuse: Literal["signature", "version"] = "signature"
    rebuild: int = Field(0, ge=0)
    #: Under ``from-source``, take this package's wheel from the index (sha256 locked)
    #: instead of building it.
    prebuilt: bool = False
    #: Worker resources a cluster build of this package needs (``{ gpu = 1 }``: Dask worker
    #: resources); where it is built does not change its signature.
    resources: dict[str, float] = Field(default_factory=dict)
    signature: PolicyTable = Field(default_factory=lambda: PolicyTable.model_validate({}))

    def build_settings(self) -> dict[str, Any]:
        """What goes into the ``settings`` component: the settings that change how the build
        runs and are not already covered by a component of their own (source, env, plugin,
        configs, rebuild, policy) or irrelevant to the output (reuse)."""
        return {"config-settings": dict(self.config_settings)}


_Model = TypeVar("_Model", bound=BaseModel)


def _describe(error: Any) -> str:
    loc = ".".join(str(p) for p in error["loc"] if not isinstance(p, int)) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key {loc!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}"


def load_settings(path: Path, model: type[_Model]) -> _Model:
    """Read and validate ``path``; the first problem is reported with its line."""
    data, text = read_toml(path)
    try:
        settings = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        error = (
            PolicyError
            if first["loc"][:1] == ("signature",) and model is PackageSettings
            else InputError
        )
        raise error(_describe(first), file=path, line=line_of(text, first["loc"])) from None
    if isinstance(settings, PackageSettings):
        try:
            settings.signature.policy()
        except PolicyError as exc:
            key = exc.message.split(":", 1)[0].split(".")
            raise PolicyError(
                exc.message, file=path, line=line_of(text, ["signature", *key])
            ) from None
    return settings
