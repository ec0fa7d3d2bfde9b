"""``buildprint`` command line: parses, calls the library, renders."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from buildprint import Engine, Options
from buildprint.cli import render
from buildprint.cli.progress import BuildProgress
from buildprint.errors import BuildFailed, BuildprintError
from buildprint.signature.diff import changed_paths

if TYPE_CHECKING:
    from buildprint.builder.outcome import Outcome
    from buildprint.plan.decision import Decision

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

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
with_deps_option = click.option(
    "--with-deps",
    is_flag=True,
    help="Also build the install dependencies (resolved from the index, locked).",
)


def _checked_remote_urls(
    _ctx: click.Context, _param: click.Parameter, urls: tuple[str, ...]
) -> tuple[str, ...]:
    """``--remote URL``: checked as ``[[remote]] url`` is, before anything else runs (a plan
    answered by its snapshot included); a bad one is a usage error (exit 2)."""
    from buildprint.store.remote import check_remote_url

    for url in urls:
        try:
            check_remote_url(url)
        except BuildprintError as exc:
            raise click.BadParameter(exc.message) from None
    return urls


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
            with_deps_option,
            click.option(
                "--remote",
                "remotes",
                multiple=True,
                metavar="URL",
                callback=_checked_remote_urls,
                help="Remote cache (http(s):// or s3://), read and written.",
            ),
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


def _engine(project: Path, store: Path | None = None, **options: Any) -> Engine:
    """The engine for a command; ``options`` are the shared requirement options."""
    return Engine(
        project,
        Options(
            requirements=tuple(options.get("requirements", ())),
            requirement_files=tuple(options.get("files", ())),
            force=tuple(options.get("force", ())),
            reuse_by_version=tuple(options.get("reuse_by_version", ())),
            store=store,
            index_url=options.get("index_url"),
            find_links=tuple(options.get("find_links", ())),
            remotes=tuple(options.get("remotes", ())),
            with_deps=bool(options.get("with_deps")),
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
    as_json: bool,
    jobs: int,
    **options: Any,
) -> None:
    """Build what changed; reuse or fetch the rest."""
    with _engine(**options) as engine:
        with _live_progress(as_json) as progress:
            outcomes = engine.build(jobs, progress)
        _warn(engine.problems)
    failed = [o for o in outcomes if o.done == "failed"]
    if as_json:
        click.echo(render.dump_json({"packages": [render.outcome_json(o) for o in outcomes]}))
    else:
        # The table's caption carries the counts per outcome.
        out.print(render.summary_table(outcomes, "build"))
        for outcome in failed:
            err.print(f"[red]{outcome.decision.node.name}[/]: {outcome.error}")
    sys.exit(1 if failed else 0)


def _warn(problems: Sequence[str]) -> None:
    for problem in problems:
        err.print(f"[yellow]warning:[/] {problem}", highlight=False)


def _live_progress(
    as_json: bool,
) -> AbstractContextManager[Callable[[str, Decision | Outcome], None] | None]:
    """Build progress on stderr: a live display on a terminal, plain lines when stderr is
    not one, nothing with ``--json`` (stdout is then the one JSON object)."""
    if as_json:
        return nullcontext()
    return BuildProgress(err)


@main.command()
@_requirement_options
@reports_errors
def plan(
    as_json: bool,
    **options: Any,
) -> None:
    """Say what a build would do, and why, without building."""
    with _engine(**options) as engine:
        entries = engine.plan_entries()
        _warn(engine.problems)
    if as_json:
        packages = [render.decision_json(e) for e in entries]
        click.echo(render.dump_json({"packages": packages, "snapshot": engine.snapshot_note}))
    else:
        out.print(render.summary_table(entries, "plan"))


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
            f"({decision.reason}); compared with {explanation.closest.signature[:16]}"
            + (
                " (provisional: its signature is known once they are built)"
                if decision.pending_on
                else ""
            ),
            explanation.changes,
        )
    )


@main.command()
@click.argument("what")
@project_option
@click.option("--store", type=click.Path(path_type=Path), help="Store folder.")
@json_option
@reports_errors
def show(what: str, project: Path, store: Path | None, as_json: bool) -> None:
    """Print the manifest of NAME (as it would be built now), a SIGNATURE, or a WHEEL."""
    with _engine(project, store=store) as engine:
        manifest = engine.show(what)
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
    with _engine(project, store=store) as engine:
        compared = engine.diff(a, b)
    old, new, changes = compared.old, compared.new, compared.changes
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


@main.command()
@project_option
@click.option("--upgrade", is_flag=True, help="Resolve every package's build requirements anew.")
@click.option("--store", type=click.Path(path_type=Path), help="Store folder.")
@with_deps_option
@reports_errors
def lock(project: Path, upgrade: bool, store: Path | None, with_deps: bool) -> None:
    """Pin every package's build requirements in buildprint.lock (and, with --with-deps, the
    versions of the install dependencies)."""
    with _engine(project, store=store, with_deps=with_deps) as engine:
        nodes = engine.lock(upgrade=upgrade)
    for node in nodes:
        pins = ", ".join(f"{w.name}=={w.version}" for w in node.locked.wheels)
        out.print(f"{node.name} {node.version}: {node.lock_error or pins or '(none)'}")
    failed = [node.name for node in nodes if node.lock_error]
    if failed:
        raise BuildFailed(f"could not lock {', '.join(failed)}")


@main.group()
def keys() -> None:
    """Signing keys for records pushed to remote caches."""


@keys.command(name="generate")
@project_option
@click.option("--store", type=click.Path(path_type=Path), help="Store folder.")
@reports_errors
def keys_generate(project: Path, store: Path | None) -> None:
    """Create the project's signing key (kept in the store) and print its public key."""
    with _engine(project, store=store) as engine:
        click.echo(engine.generate_key())


@main.group()
def cache() -> None:
    """Inspect and move entries between the local store and remote caches."""


_remote_options = [
    click.option(
        "--remote",
        "remote_urls",
        multiple=True,
        metavar="URL",
        callback=_checked_remote_urls,
        help="A remote cache (http(s):// or s3://) instead of the local store.",
    ),
    click.option(
        "--remotes",
        "configured",
        is_flag=True,
        help="The project's [[remote]] caches instead of the local store.",
    ),
]


def _with_remote_options(command: F) -> F:
    for option in reversed(_remote_options):
        command = option(command)
    return command


@cache.command(name="ls")
@project_option
@click.option("--store", type=click.Path(path_type=Path), help="Store folder.")
@_with_remote_options
@click.option(
    "--signatures-only",
    is_flag=True,
    help="With remotes: list names, sizes and dates without reading and verifying records.",
)
@json_option
@reports_errors
def cache_ls(
    project: Path,
    store: Path | None,
    remote_urls: tuple[str, ...],
    configured: bool,
    signatures_only: bool,
    as_json: bool,
) -> None:
    """List the builds in the local store, or in remote caches (--remote, --remotes).

    For a remote every entry is listed with its size and date; its record is read and
    verified (trusted keys) to show name, version and wheels, unless --signatures-only.
    """
    with _engine(project, store=store) as engine:
        if remote_urls or configured:
            contents = engine.list_remotes(
                remote_urls, configured=configured, read_records=not signatures_only
            )
        else:
            records = engine.records()
    if remote_urls or configured:
        listed = [render.remote_json(c) for c in contents]
        if as_json:
            click.echo(render.dump_json({"remotes": listed}))
            return
        for block in listed:
            out.print(f"{block['url']}: {len(block['records'])} record(s)", highlight=False)
            for row in block["records"]:
                out.print(render.remote_row(row), highlight=False)
        for block in listed:
            _warn([row["problem"] for row in block["records"] if row["problem"]])
        return
    rows = [render.record_json(r) for r in records]
    if as_json:
        click.echo(render.dump_json({"records": rows}))
        return
    for row in rows:
        out.print(
            f"{row['name']} {row['version']} {row['signature'][:16]} {row['created']}"
            f" {' '.join(row['wheels'])}",
            highlight=False,
        )


@cache.command(name="verify")
@project_option
@click.option("--store", type=click.Path(path_type=Path), help="Store folder.")
@_with_remote_options
@click.option(
    "--download",
    is_flag=True,
    help="With remotes: download and re-hash every blob instead of checking it exists.",
)
@reports_errors
def cache_verify(
    project: Path,
    store: Path | None,
    remote_urls: tuple[str, ...],
    configured: bool,
    download: bool,
) -> None:
    """Re-hash every blob and check every record; exit 1 on any problem.

    With --remote/--remotes: check each remote entry instead (signature by a trusted key,
    the record's own name, every blob present, or re-hashed with --download). Nothing is
    changed, locally or remotely.
    """
    with _engine(project, store=store) as engine:
        if remote_urls or configured:
            problems = engine.verify_remotes(remote_urls, configured=configured, download=download)
        else:
            problems = engine.verify_store()
    for problem in problems:
        click.echo(problem, err=True)  # one line each, never wrapped: scripts grep these
    out.print(f"{len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


@cache.command(name="gc")
@project_option
@click.option("--store", type=click.Path(path_type=Path), help="Store folder.")
@click.option(
    "--grace",
    "grace_seconds",
    type=click.FloatRange(min=0),
    default=3600,
    show_default=True,
    help="Seconds a blob no record uses (or a lock file) is kept: another process may be "
    "about to write its record.",
)
@click.option(
    "--unused-days",
    type=click.FloatRange(min=0),
    default=7,
    show_default=True,
    help="Days after which unused build environments and git checkouts are removed.",
)
@reports_errors
def cache_gc(project: Path, store: Path | None, grace_seconds: float, unused_days: float) -> None:
    """Remove what the local store no longer needs: damaged blobs (to quarantine/), blobs no
    record refers to, temp files and folders of dead processes, lock files nobody holds,
    build environments and git checkouts unused for a while (no live process's).

    Remote caches are not collected: their entries are create-only (never overwritten or
    deleted by buildprint, so a reader never loses a blob under a record); expire them with
    the server's own tools (S3 lifecycle rules, a cron job on the WebDAV folder).
    """
    with _engine(project, store=store) as engine:
        removed = engine.collect_garbage(
            grace_seconds=grace_seconds, unused_seconds=unused_days * 86400
        )
    out.print(f"removed {removed} file(s)")


@cache.command(name="push")
@_requirement_options
@reports_errors
def cache_push(
    as_json: bool,
    **options: Any,
) -> None:
    """Push every local build to the writable remotes; exit 1 if any upload was refused.

    Each refusal is printed (record, blob, remote, the server's answer); a record that was
    there already counts as pushed. A local blob that does not hash to its name is never
    uploaded.
    """
    with _engine(**options) as engine:
        report = engine.push()
        _warn(engine.problems)
    for refusal in report.refused:
        click.echo(f"refused: {refusal}", err=True)  # one line each: scripts grep these
    if as_json:
        click.echo(
            render.dump_json(
                {
                    "records": report.records,
                    "landed": report.landed,
                    "remotes": [
                        {"url": u, "created": report.created[u], "present": report.present[u]}
                        for u in report.remotes
                    ],
                    "refused": [refusal.__dict__ for refusal in report.refused],
                }
            )
        )
    else:
        for url in report.remotes:
            out.print(
                f"{url}: {report.created[url]} created, {report.present[url]} already there",
                highlight=False,
                soft_wrap=True,  # one line per remote, however long its URL
            )
        refused = f"; {len(report.refused)} upload(s) refused" if report.refused else ""
        out.print(f"pushed {report.landed} of {report.records} record(s){refused}", soft_wrap=True)
    sys.exit(0 if report.complete else 1)


@cache.command(name="pull")
@_requirement_options
@reports_errors
def cache_pull(
    as_json: bool,
    **options: Any,
) -> None:
    """Fetch from the remotes every planned package they hold."""
    with _engine(**options) as engine:
        fetched, found = engine.pull()
        _warn(engine.problems)
    out.print(f"fetched {fetched} of {found} record(s)")


@main.command()
@click.option(
    "--repository-url",
    required=True,
    metavar="URL",
    help="Upload endpoint of a pypiserver/devpi index (credentials: "
    "BUILDPRINT_PUBLISH_USER/PASSWORD or TWINE_USERNAME/PASSWORD).",
)
@project_option
@json_option
@reports_errors
def publish(repository_url: str, project: Path, as_json: bool) -> None:
    """Upload the wheelhouse's wheels to a package index."""
    with _engine(project) as engine:
        results = engine.publish(repository_url)
    if as_json:
        click.echo(render.dump_json({"published": [r.__dict__ for r in results]}))
    else:
        for result in results:
            out.print(f"{result.wheel}: {result.status}", highlight=False)
