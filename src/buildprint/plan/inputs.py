"""Collecting a package's inputs: every component value of its signature, and its manifest.

What plan-time plugin code (imports, ``signature`` and host hooks) looked at, and which files
each code digest was read from, is kept here too: a plan snapshot must re-check it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from buildprint.errors import InputError
from buildprint.fsio import stat_key
from buildprint.inputs.env import env_value
from buildprint.inputs.host import HOST_VARIABLE, host_value
from buildprint.inputs.plugin import function_reference, module_file, plugin_digest
from buildprint.inputs.toolchain import interpreter_identity, toolchain_value, toolset
from buildprint.plan.graph import PackageNode
from buildprint.project.hooks import PluginHooks, call_hook, load_function, load_hooks
from buildprint.project.project import Project
from buildprint.project.tracking import HookReads, tracking
from buildprint.resolve.lockfile import PinnedWheel
from buildprint.signature.canonical import CanonicalValue
from buildprint.signature.compose import DependencyInput, SignatureInputs, compose
from buildprint.signature.manifest import Manifest, PackageRef
from buildprint.signature.policy import SignatureDraft
from buildprint.store.memo import Memo

__all__ = ["DepResult", "InputCollector", "locked_wheels"]


@dataclass(frozen=True)
class DepResult:
    """What a decided (or finished) dependency offers its dependents."""

    version: str
    signature: str | None
    artifact: str | None
    #: The store key of the build (its signature, unless it is a variant: see ActionRecord).
    key: str | None = None


class InputCollector:
    """Collects each package's signature inputs and composes its manifest (plugins loaded,
    toolchain probed and plugin code digested once per run)."""

    def __init__(
        self,
        project: Project,
        memo: Memo,
        *,
        python: str = sys.executable,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.project = project
        self.memo = memo
        self.python = python
        self.environ = dict(os.environ if environ is None else environ)
        self._declared: dict[str, dict[str, str]] = {}
        self._declared_lock = threading.Lock()
        #: What the toolchain lookups rest on (see :attr:`Toolset.files`).
        self.toolchain_files: set[str] = set()
        self._host_hook: PluginHooks | None = None
        self._hooks: dict[str, PluginHooks] = {}
        self._host_code: CanonicalValue = None
        #: What plan-time plugin code looked at (variables, files, probes; volatile acts).
        self.hook_reads = HookReads()
        #: Per plugin module (or host hook reference): the files its digest was read from.
        self.code_files: dict[str, dict[str, str | None]] = {}
        #: Third-party distributions plugin code imports (their versions are recorded).
        self.code_distributions: set[str] = set()

    def toolchain(self, node: PackageNode) -> dict[str, CanonicalValue]:
        """``node``'s toolchain component: the tools its declared variables make it find."""
        declared = self.build_env(node)
        self.toolchain_files.update(toolset(self.python, declared).files)
        return toolchain_value(self.python, declared, self.memo)

    def hooks(self, node: PackageNode) -> PluginHooks | None:
        """The plugin hooks acting on ``node`` (loaded once per run)."""
        module = node.settings.plugin
        if module is None:
            return None
        if module not in self._hooks:
            with tracking(self.hook_reads):  # module-level code runs on import
                self._hooks[module] = load_hooks(self.project.root, module)
        return self._hooks[module]

    def build_env(self, node: PackageNode) -> dict[str, str]:
        """The variables ``node``'s build is declared to get (buildprint adds its fixed ones,
        see :func:`buildprint.builder.backend.build_env`): its settings' ``env`` and the
        declared pass-through variables that are set, then whatever the plugin's
        ``update_env`` makes of them. That hook runs here, at plan time and tracked, once
        per run: what it returns is part of the ``env`` component, so a hook reading the
        caller's environment changes the signature, never just the wheel."""
        with self._declared_lock:
            cached = self._declared.get(node.name)
            if cached is None:
                cached = self._declared[node.name] = self._declare(node)
        return dict(cached)

    def _declare(self, node: PackageNode) -> dict[str, str]:
        env = dict(node.settings.env)
        for name in self.project.settings.signature.env_pass_through:
            if name in self.environ:
                env[name] = self.environ[name]
        if not self._has_hook(node, "update_env"):
            return env
        hooks = self.hooks(node)
        assert hooks is not None
        with tracking(self.hook_reads):
            updated = call_hook(hooks, "update_env", node.view, dict(env))
        if not isinstance(updated, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in updated.items()
        ):
            raise InputError(
                f"update_env ({hooks.module}) must return a mapping of str to str, "
                f"got {type(updated).__name__}",
                file=hooks.file,
            )
        return dict(updated)

    def _has_hook(self, node: PackageNode, name: str) -> bool:
        """Whether ``node``'s plugin defines hook ``name``, as its code digest records (so a
        plugin without it need not be imported to plan)."""
        module = node.settings.plugin
        if module is None:
            return False
        value = self.plugin_value(module)
        code = value.get("code", {}) if isinstance(value, dict) else {}
        return isinstance(code, dict) and f"{module}:{name}" in code

    def _host(self, node: PackageNode) -> dict[str, CanonicalValue]:
        variable = self.environ.get(HOST_VARIABLE)
        reference = self.project.settings.signature.host_hook
        if reference is None:
            return host_value(variable)
        if self._host_hook is None:
            with tracking(self.hook_reads):
                self._host_hook = load_function(self.project.root, reference)
        hooks, function = self._host_hook, reference.split(":", 1)[1]

        def call() -> Any:
            with tracking(self.hook_reads):
                return call_hook(hooks, function, node.view)

        return host_value(variable, call, hook_file=str(hooks.file))

    def plugin_value(self, module: str) -> CanonicalValue:
        """The plugin component, memoized by the state of every file it was read from (and
        their folders, so a new module that would shadow an import is noticed) and by the
        versions of the third-party distributions it records."""
        key = f"plugin:{self.project.root}:{module}"
        cached = self.memo.get(key)
        if cached is None or not _plugin_memo_valid(cached):
            computed = plugin_digest(self.project.root, module)
            files = self._code_files(module, computed)
            cached = {"value": computed, "files": {str(p): stat_key(p) for p in sorted(files)}}
            self.memo.put(key, cached)
        self.code_files[module] = cached["files"]
        self.code_distributions.update(cached["value"].get("third-party", {}))
        value: CanonicalValue = cached["value"]
        return value

    def _code_files(self, module: str, value: Mapping[str, Any]) -> set[Path]:
        """The files (and their folders) a code digest was read from."""
        code = value.get("code") or {}
        paths: set[Path] = set()
        for name in {module} | {str(name).split(":", 1)[0] for name in code}:
            try:
                path = module_file(self.project.root, name)
            except InputError:
                continue
            paths.update({path, path.parent})
        return paths

    def inputs(self, node: PackageNode, deps: Mapping[str, DepResult]) -> SignatureInputs:
        """Everything that goes into ``node``'s signature."""
        settings = node.settings
        pass_through = {
            name: self.environ.get(name)
            for name in self.project.settings.signature.env_pass_through
        }
        plugin = self.plugin_value(settings.plugin) if settings.plugin else None
        host = self._host(node)
        reference = self.project.settings.signature.host_hook
        recorded: dict[str, CanonicalValue] = {
            "source": node.source.provenance(),  # type: ignore[dict-item]
            "python": interpreter_identity(self.python)["full_version"],
        }
        if reference is not None:
            if self._host_code is None:  # the same for every package: read it once
                host_code = function_reference(self.project.root, reference)
                files = self._code_files(reference.split(":", 1)[0], host_code)
                self.code_files[reference] = {str(p): stat_key(p) for p in sorted(files)}
                self._host_code = host_code
            recorded["host-hook"] = self._host_code
        return SignatureInputs(
            package=PackageRef(node.name, node.version),
            source=node.source.digest,
            patches=node.patch_digests,
            settings=settings.build_settings(),
            env=self._env_value(node, pass_through),
            plugin=plugin,
            build_deps={
                w.name: {"version": w.version, "sha256": w.sha256} for w in locked_wheels(node)
            },
            deps=tuple(
                DependencyInput(dep, deps[dep].version, deps[dep].signature, deps[dep].artifact)
                for dep in node.deps
            ),
            toolchain=self.toolchain(node),
            host=host,
            configs=dict(settings.configs),
            rebuild=settings.rebuild,
            recorded=recorded,
        )

    def _env_value(
        self, node: PackageNode, pass_through: Mapping[str, str | None]
    ) -> dict[str, CanonicalValue]:
        """The ``env`` component: settings and pass-through values, or, after an
        ``update_env`` hook, what it returned (pass-through values it left alone stay
        digests)."""
        if not self._has_hook(node, "update_env"):
            return env_value(node.settings.env, pass_through)
        declared = self.build_env(node)
        given = {k: v for k, v in declared.items() if k not in pass_through or pass_through[k] != v}
        return env_value(given, {k: v for k, v in pass_through.items() if k not in given})

    def manifest(self, node: PackageNode, deps: Mapping[str, DepResult]) -> Manifest:
        """``node``'s manifest for its dependencies' results ``deps``; raises
        :class:`~buildprint.signature.compose.PendingDependencies` while an artifact-mode
        dependency's result is unknown."""
        inputs = self.inputs(node, deps)
        hook = None
        hooks = self.hooks(node) if self._has_hook(node, "signature") else None
        if hooks is not None and "signature" in hooks:
            view = node.view

            def hook(sig: SignatureDraft) -> None:
                with tracking(self.hook_reads):
                    call_hook(hooks, "signature", view, sig)

        return compose(inputs, node.settings.signature.policy(), hook)


def locked_wheels(node: PackageNode) -> list[PinnedWheel]:
    """The locked build requirements installed from the index: those built in this graph
    come from their own builds instead."""
    built = set(node.deps)
    return [w for w in node.locked.wheels if canonicalize_name(w.name) not in built]


def _plugin_memo_valid(cached: Any) -> bool:
    files = cached.get("files")
    if not isinstance(files, dict) or not files:
        return False
    if any(stat_key(Path(path)) != state for path, state in files.items()):
        return False
    third_party = cached.get("value", {}).get("third-party", {})
    for dist, recorded in third_party.items():
        try:
            if version(dist) != recorded:
                return False
        except PackageNotFoundError:
            return False
    return True
