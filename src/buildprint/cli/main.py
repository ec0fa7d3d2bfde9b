"""``buildprint`` command line: parses, calls the library, renders."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from buildprint.build.engine import Engine, Options
from buildprint.build.planner import Decision
from buildprint.build.runner import Outcome
from buildprint.build.wheel import read_manifest
from buildprint.cli import render
from buildprint.errors import BuildprintError, InputError
from buildprint.signature.diff import changed_paths, diff
from buildprint.signature.manifest import Manifest
from buildprint.store.local import LocalStore

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
_SIGNATURE = re.compile(r"[0-9a-f]{64}")

out = Console(soft_wrap=False)
err = Console(stderr=True, soft_wrap=False)


def reports_errors(command: F) -> F:
    """Turn library errors into one clear message and the contract's exit code."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BuildprintError as exc:
            click.echo(f"buildprint: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


project_option = click.option(
    "-p",
    "--project",
    "project",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Project folder (holds buildprint.toml).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _requirement_options(command: F) -> F:
    for option in reversed(
        [
            click.argument("requirements", nargs=-1),
            click.option(
                "-r",
                "--requirement",
                "files",
                multiple=True,
                type=click.Path(path_type=Path),
                help="Requirements file.",
            ),
            project_option,
            click.option("--store", type=click.Path(path_type=Path), help="Store folder."),
            click.option("--index-url", help="Package index (PEP 691/503 URL or folder)."),
            click.option("--find-links", multiple=True, help="Extra folder or URL of files."),
            click.option("--force", multiple=True, metavar="NAME", help="Rebuild NAME."),
            click.option(
                "--reuse-by-version",
                multiple=True,
                metavar="NAME",
                help="Accept a stored wheel of the same version even if inputs changed.",
            ),
            json_option,
        ]
    ):
        command = option(command)
    return command


def _engine(
    project: Path,
    requirements: Sequence[str] = (),
    files: Sequence[Path] = (),
    store: Path | None = None,
    index_url: str | None = None,
    find_links: Sequence[str] = (),
    force: Sequence[str] = (),
    reuse_by_version: Sequence[str] = (),
) -> Engine:
    return Engine(
        project,
        Options(
            requirements=tuple(requirements),
            requirement_files=tuple(files),
            force=tuple(force),
            reuse_by_version=tuple(reuse_by_version),
            store=store,
            index_url=index_url,
            find_links=tuple(find_links),
        ),
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="buildprint")
def main() -> None:
    """Build packages from source, keyed by a complete, explainable build signature."""


@main.command()
@_requirement_options
@click.option("-j", "--jobs", default=1, show_default=True, type=click.IntRange(1, 256))
@reports_errors
def build(
    requirements: tuple[str, ...],
    files: tuple[Path, ...],
    project: Path,
    store: Path | None,
    index_url: str | None,
    find_links: tuple[str, ...],
    force: tuple[str, ...],
    reuse_by_version: tuple[str, ...],
    as_json: bool,
    jobs: int,
) -> None:
    """Build what changed; reuse or fetch the rest."""
    with _engine(
        project, requirements, files, store, index_url, find_links, force, reuse_by_version
    ) as engine:
        progress = None if as_json or not err.is_terminal else _live_progress()
        outcomes = engine.build(jobs, progress)
    failed = [o for o in outcomes if o.done == "failed"]
    if as_json:
        click.echo(render.dump_json({"packages": [render.outcome_json(o) for o in outcomes]}))
    else:
        out.print(render.summary_table(outcomes, "build"))
        counts = {
            k: sum(1 for o in outcomes if o.done == k)
            for k in ("reused", "fetched", "built", "failed")
        }
        out.print(", ".join(f"{n} {k}" for k, n in counts.items()))
        for outcome in failed:
            err.print(f"[red]{outcome.decision.node.name}[/]: {outcome.error}")
    sys.exit(1 if failed else 0)


def _live_progress() -> Callable[[str, Decision | Outcome], None]:
    def progress(event: str, item: Decision | Outcome) -> None:
        if event == "start" and isinstance(item, Decision):
            err.print(
                f"[dim]…[/] {item.node.name} {item.node.version}: {item.action} ({item.reason})"
            )
        elif isinstance(item, Outcome):
            err.print(f"[bold]✓[/] {item.decision.node.name}: {item.done} in {item.seconds:.1f}s")

    return progress


@main.command()
@_requirement_options
@reports_errors
def plan(
    requirements: tuple[str, ...],
    files: tuple[Path, ...],
    project: Path,
    store: Path | None,
    index_url: str | None,
    find_links: tuple[str, ...],
    force: tuple[str, ...],
    reuse_by_version: tuple[str, ...],
    as_json: bool,
) -> None:
    """Say what a build would do, and why, without building."""
    with _engine(
        project, requirements, files, store, index_url, find_links, force, reuse_by_version
    ) as engine:
        decisions = engine.plan()
    if as_json:
        click.echo(render.dump_json({"packages": [render.decision_json(d) for d in decisions]}))
    else:
        out.print(render.summary_table(decisions, "plan"))


@main.command()
@click.argument("name")
@project_option
@click.option("--store", type=click.Path(path_type=Path), help="Store folder.")
@json_option
@reports_errors
def why(name: str, project: Path, store: Path | None, as_json: bool) -> None:
    """Explain NAME's signature against the closest stored build."""
    with _engine(project, store=store) as engine:
        explanation = engine.why(name)
    decision = explanation.decision
    if as_json:
        click.echo(
            render.dump_json(
                {
                    **render.decision_json(decision),
                    "closest": explanation.closest.signature if explanation.closest else None,
                    "changed": changed_paths(explanation.changes),
                    "changes": [c.to_json() for c in explanation.changes],
                }
            )
        )
        return
    if explanation.closest is None:
        out.print(
            f"{decision.node.name} {decision.node.version}: {decision.action} —"
            f" {decision.reason}; no stored build to compare with"
        )
        return
    out.print(
        render.changes_tree(
            f"{decision.node.name} {decision.node.version}: {decision.action} "
            f"({decision.reason}); compared with {explanation.closest.signature[:16]}",
            explanation.changes,
        )
    )


def _load_manifest(what: str, project: Path, store: Path | None) -> Manifest:
    """A manifest from a wheel, a manifest file, or a signature in the project's store."""
    path = Path(what)
    if path.suffix == ".whl":
        if not path.is_file():
            raise InputError("no such wheel", file=path)
        data = read_manifest(path)
        if data is None:
            raise InputError("wheel carries no buildprint manifest", file=path)
        return Manifest.from_bytes(data, source=str(path))
    if path.is_file():
        return Manifest.from_bytes(path.read_bytes(), source=str(path))
    if _SIGNATURE.fullmatch(what):
        root = store or (project / ".buildprint")
        if root.is_dir():
            with LocalStore(root) as local:
                record = local.get_record(what)
            if record is not None:
                return Manifest.from_json(record.manifest, source=f"store:{what}")
        raise InputError(f"signature {what} is not in the store", file=root)
    raise InputError(f"{what!r} is neither a wheel, a manifest file nor a signature")


@main.command()
@click.argument("what")
@project_option
@click.option("--store", type=click.Path(path_type=Path), help="Store folder.")
@json_option
@reports_errors
def show(what: str, project: Path, store: Path | None, as_json: bool) -> None:
    """Print the manifest of NAME (as it would be built now), a SIGNATURE, or a WHEEL."""
    if what.endswith(".whl") or _SIGNATURE.fullmatch(what) or Path(what).is_file():
        manifest = _load_manifest(what, project, store)
    else:
        with _engine(project, store=store) as engine:
            manifest = engine.manifest_of(what)
    if as_json:
        click.echo(render.dump_json(manifest.to_json()))
    else:
        out.print(render.manifest_table(manifest))


@main.command(name="diff")
@click.argument("a")
@click.argument("b")
@project_option
@click.option("--store", type=click.Path(path_type=Path), help="Store folder.")
@json_option
@reports_errors
def diff_command(a: str, b: str, project: Path, store: Path | None, as_json: bool) -> None:
    """Compare two manifests (signatures, wheels or manifest files)."""
    old, new = _load_manifest(a, project, store), _load_manifest(b, project, store)
    changes = diff(old, new)
    if as_json:
        click.echo(
            render.dump_json(
                {
                    "a": old.signature,
                    "b": new.signature,
                    "changed": changed_paths(changes),
                    "changes": [c.to_json() for c in changes],
                }
            )
        )
    else:
        out.print(render.changes_tree(f"{old.signature[:16]} → {new.signature[:16]}", changes))
