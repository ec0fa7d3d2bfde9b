"""``buildprint`` command line: parses, calls the library, renders."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.markup import escape

from buildprint import Engine, Options
from buildprint.cli import graph, render
from buildprint.cli.progress import BuildProgress
from buildprint.errors import BuildFailed, BuildprintError
from buildprint.fsio import write_atomic
from buildprint.signature.diff import changed_paths

if TYPE_CHECKING:
    from buildprint.builder.outcome import Outcome
    from buildprint.plan.decision import Decision

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

# Wide when not a terminal: piped tables keep their columns (render.console).
out = render.console()
err = render.console(stderr=True)


def reports_errors(command: F) -> F:
    """Turn library errors into one clear message and the contract's exit code; Ctrl-C into
    one line and exit 130 (:func:`_interrupted`)."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BuildprintError as exc:
            click.echo(f"buildprint: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            _interrupted(exc)

    return wrapper  # type: ignore[return-value]


#: The exit status of a run stopped by Ctrl-C (SIGINT): 128 + 2, as shells report it.
INTERRUPTED = 130


def _interrupted(exc: KeyboardInterrupt) -> NoReturn:
    """Ctrl-C: one line on stderr (what was being worked on, as the build progress noted it),
    no traceback, exit 130. The run has stopped its builds already (the running commands'
    process groups killed, builder/scheduler.py) and stores only complete results, so this
    leaves at once rather than waiting for worker threads: a command a worker started since
    dies with this process (builder/guard.py)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
    notes = " ".join(getattr(exc, "__notes__", ()))
    click.echo(f"buildprint: interrupted{' ' + notes if notes else ''}", err=True)
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(INTERRUPTED)


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
from_source_option = click.option(
    "--from-source",
    is_flag=True,
    help="Build the whole closure from sdists, build requirements included (implies "
    "--with-deps; prebuilt = true packages come from the index as wheels).",
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


constraint_option = click.option(
    "-c",
    "--constraint",
    "constraints",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Constraints file: narrows the versions of required packages, adds none.",
)


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
            constraint_option,
            project_option,
            click.option("--store", type=click.Path(path_type=Path), help="Store folder."),
            click.option("--index-url", help="Package index (PEP 691/503 URL or folder)."),
            click.option(
                "--extra-index-url",
                "extra_index_urls",
                multiple=True,
                metavar="URL",
                help="Another package index, searched with the main one (docs/sources.md).",
            ),
            click.option("--find-links", multiple=True, help="Extra folder or URL of files."),
            click.option("--force", multiple=True, metavar="NAME", help="Rebuild NAME."),
            with_deps_option,
            from_source_option,
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
            extra_index_urls=tuple(options.get("extra_index_urls", ())),
            constraint_files=tuple(options.get("constraints", ())),
            remotes=tuple(options.get("remotes", ())),
            with_deps=bool(options.get("with_deps")),
            from_source=bool(options.get("from_source")),
            executor=options.get("executor"),
        ),
    )


def _checked_executor(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from buildprint.project.settings import executor_problem

    problem = None if value is None else executor_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="buildprint")
def main() -> None:
    """Build packages from source, keyed by a complete, explainable build signature."""


@main.command()
@_requirement_options
@click.option("-j", "--jobs", default=1, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--executor",
    metavar="dask://HOST:PORT",
    callback=_checked_executor,
    help="Build on the workers of this Dask scheduler ([executor] url); reuse stays local.",
)
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
            err.print(f"[red]{outcome.decision.node.name}[/]: {escape(outcome.error or '')}")
    sys.exit(1 if failed else 0)


def _warn(problems: Sequence[str]) -> None:
    for problem in problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)


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
    for note in engine.notes:
        err.print(f"note: {note}", highlight=False, markup=False)
    if as_json:
        packages = [render.decision_json(e) for e in entries]
        edges = graph.edges_json(entries)
        click.echo(
            render.dump_json(
                {"packages": packages, "edges": edges, "snapshot": engine.snapshot_note}
            )
        )
    else:
        out.print(render.summary_table(entries, "plan"))


@main.command("graph")
@_requirement_options
@click.option("--order", is_flag=True, help="Print the build order (name==version per line).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file instead.")
@reports_errors
def graph_command(order: bool, output: Path | None, as_json: bool, **options: Any) -> None:
    """Write the package graph as Graphviz DOT (or, with --order, the build order): every
    package, and an edge from each to what it builds with (solid) and requires (dashed)."""
    with _engine(**options) as engine:
        entries = engine.plan_entries()
        _warn(engine.problems)
    if as_json:
        text = (
            render.dump_json(
                {"order": [e.name for e in entries], "edges": graph.edges_json(entries)}
            )
            + "\n"
        )
    else:
        text = graph.build_order(entries) if order else graph.dot(entries)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_atomic(output, text.encode("utf-8"))


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
            f" {decision.reason}; no stored build to compare with",
            markup=False,
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
@click.argument("name")
@project_option
@click.option("--store", type=click.Path(path_type=Path), help="Store folder.")
@json_option
@reports_errors
def audit(name: str, project: Path, store: Path | None, as_json: bool) -> None:
    """What the last build of NAME read: source tree, build environment, system files."""
    with _engine(project, store=store) as engine:
        report = engine.audit(name)
    if as_json:
        click.echo(render.dump_json(render.audit_json(report)))
    else:
        out.print(render.audit_text(report), markup=False, highlight=False)


@main.command()
@click.argument("names", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every package with a stored build.")
@click.option(
    "-r",
    "--requirement",
    "files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Requirements file.",
)
@project_option
@click.option("--store", type=click.Path(path_type=Path), help="Store folder.")
@json_option
@reports_errors
def verify(
    names: tuple[str, ...],
    every: bool,
    files: tuple[Path, ...],
    project: Path,
    store: Path | None,
    as_json: bool,
) -> None:
    """Rebuild NAME (or --all) afresh, nothing stored, and compare with the stored wheel."""
    if not names and not every:
        raise click.UsageError("name the packages to verify, or give --all")
    if names and every:
        raise click.UsageError("give package names or --all, not both")
    with _engine(project, store=store, files=files) as engine:
        results = engine.verify_builds(names, every=every)
    if as_json:
        click.echo(render.dump_json({"packages": [render.verification_json(v) for v in results]}))
    else:
        out.print(render.verification_text(results), markup=False, highlight=False)
    if any(not v.reproducible and not v.skipped for v in results):
        sys.exit(1)


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
@from_source_option
@constraint_option
@reports_errors
def lock(
    project: Path,
    upgrade: bool,
    store: Path | None,
    with_deps: bool,
    from_source: bool,
    constraints: tuple[Path, ...],
) -> None:
    """Pin every package's build requirements in buildprint.lock (and, with --with-deps, the
    versions of the install dependencies)."""
    with _engine(
        project,
        store=store,
        with_deps=with_deps,
        from_source=from_source,
        constraints=constraints,
    ) as engine:
        nodes = engine.lock(upgrade=upgrade)
    for node in nodes:
        pins = ", ".join(f"{w.name}=={w.version}" for w in node.locked.wheels)
        out.print(
            f"{node.name} {node.version}: {node.lock_error or pins or '(none)'}", markup=False
        )
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
@_requirement_options
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
@click.option(
    "--keep-current",
    is_flag=True,
    help="Keep only the builds the current plan reuses (the requirements and options as "
    "`plan` takes them); remove every other record.",
)
@click.option(
    "--max-size",
    metavar="SIZE",
    help="Remove the least recently used builds until records and blobs take at most SIZE "
    "(bytes, or NNN KiB/MiB/GiB/TiB).",
)
@click.option(
    "--max-age",
    "max_age_days",
    type=click.FloatRange(min=0),
    metavar="DAYS",
    help="Remove the builds no build run used for DAYS days.",
)
@reports_errors
def cache_gc(
    as_json: bool,
    grace_seconds: float,
    unused_days: float,
    keep_current: bool,
    max_size: str | None,
    max_age_days: float | None,
    **options: Any,
) -> None:
    """Remove what the local store no longer needs: damaged blobs (to quarantine/), blobs no
    record refers to, temp files and folders of dead processes, lock files nobody holds,
    build environments and git checkouts unused for a while (no live process's).

    With --keep-current, --max-age or --max-size it also removes builds (records), and then
    the blobs only they used; a blob a kept record uses is never removed, nor is a record
    stored while gc runs. Each removed record is printed with why.

    Remote caches are not collected: their entries are create-only (never overwritten or
    deleted by buildprint, so a reader never loses a blob under a record); expire them with
    the server's own tools (S3 lifecycle rules, a cron job on the WebDAV folder).
    """
    if (options.get("requirements") or options.get("files")) and not keep_current:
        raise click.UsageError("REQ and -r choose what --keep-current keeps: give it too")
    with _engine(**options) as engine:
        report = engine.collect_garbage(
            grace_seconds=grace_seconds,
            unused_seconds=unused_days * 86400,
            keep_current=keep_current,
            max_size=max_size,
            max_age_seconds=None if max_age_days is None else max_age_days * 86400,
        )
        _warn(engine.problems)
    over = report.max_size is not None and report.store_bytes > report.max_size
    if as_json:
        click.echo(
            render.dump_json(
                {
                    "removed": report.removed,
                    "records": [r.__dict__ for r in report.records],
                    "blobs": report.blobs,
                    "bytes": report.bytes,
                    "record_bytes": report.record_bytes,
                    "blob_bytes": report.blob_bytes,
                    "quarantined": report.quarantined,
                    "other": report.other,
                    "kept_records": report.kept_records,
                    "store_bytes": report.store_bytes,
                    "max_size": report.max_size,
                    "over_size": over,
                }
            )
        )
        return
    for record in report.records:
        what = f"{record.name} {record.version}" if record.name else "(unreadable record)"
        out.print(
            f"removed {what} {record.signature[:16]}: {record.reason}",
            highlight=False,
            markup=False,
        )
    if report.quarantined:
        out.print(f"moved {report.quarantined} damaged blob(s) to quarantine/")
    out.print(
        f"removed {report.removed} file(s): {len(report.records)} record(s), "
        f"{report.blobs} blob(s) ({_size_text(report.bytes)} freed), {report.other} other; "
        f"kept {report.kept_records} record(s), {_size_text(report.store_bytes)}",
        highlight=False,
    )
    if over:
        _warn(
            [
                f"the store still takes {_size_text(report.store_bytes)}, over --max-size "
                f"{max_size}: what is left was stored while gc ran, or is younger than --grace"
            ]
        )


def _size_text(size: int) -> str:
    """``size`` bytes for people: 532 B, 1.2 MiB, 10.0 GiB."""
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


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
            out.print(f"{result.wheel}: {result.status}", highlight=False, markup=False)
