"""``peakwatch grafana``: put the shipped dashboards into a Grafana, or write them out as files.

``push`` goes through Grafana's HTTP API (grafana-client) for a Grafana that is not provisioned from
files (Grafana Cloud, a shared server); ``export`` writes the JSON files that file provisioning reads
(deploy/grafana/). Both use the same dicts (``cli.grafana.dashboards``), so what is pushed is what
the panel-SQL test ran.

The package: ``panels`` (panel, variable and dashboard shapes, the shared SQL conventions), ``site``
(what the two single-site dashboards share), one module per dashboard (``park``, ``data_centre``,
``alerts``), ``dashboards`` (the shipped list and its JSON text) and ``push`` (grafana-client).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.grafana.dashboards import rendered_files
from cli.grafana.push import api_for, explain, push_dashboards
from cli.help import command_group
from peakwatch.errors import PushError

# grafana-client (and its HTTP stack) is imported by the commands that talk to Grafana only: importing it
# costs every other `peakwatch` command about 150 ms.

grafana_app = command_group(
    help="Grafana dashboards: push them to a Grafana, or export them.", no_args_is_help=True
)
console = Console(stderr=True)

DEFAULT_DIR = Path("deploy/grafana/dashboards")


@grafana_app.command("push")
def push(
    url: Annotated[str, typer.Option(envvar="GRAFANA_URL", help="Grafana's address, http(s)://host:port.")],
    token: Annotated[
        str,
        typer.Option(envvar="GRAFANA_TOKEN", help="Service-account token (Editor); or set GRAFANA_TOKEN."),
    ],
    folder: Annotated[str, typer.Option(help="Folder the dashboards go in (created when missing).")] = (
        "peakwatch"
    ),
    org_id: Annotated[
        int | None, typer.Option("--org-id", help="Organisation id (default: the token's organisation).")
    ] = None,
) -> None:
    """Create or update the park, data-centre and alerts dashboards in a Grafana (overwriting them).

    The dashboards read a PostgreSQL data source with uid ``peakwatch`` (deploy/grafana/provisioning)."""
    from grafana_client.client import GrafanaException  # type: ignore[import-untyped, unused-ignore]

    try:
        done = push_dashboards(api_for(url, token, org_id), folder)
    except PushError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    except (GrafanaException, OSError) as exc:
        console.print(f"[red]error:[/red] {escape(explain(exc, url))}")
        raise typer.Exit(2) from exc
    table = Table(title=escape(f"Grafana {url}, folder {folder}"))
    for column in ("dashboard", "uid", "action", "url"):
        table.add_column(column)
    for row in done:
        table.add_row(*(escape(cell) for cell in row))
    Console().print(table)


@grafana_app.command("export")
def export(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write the dashboards' JSON files.", file_okay=False)
    ] = DEFAULT_DIR,
) -> None:
    """Write every dashboard as JSON (what Grafana's file provisioning reads; the committed files in
    deploy/grafana/dashboards are checked against this output)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in rendered_files().items():
        path = directory / name
        changed = not path.exists() or path.read_text(encoding="utf-8") != text
        path.write_text(text, encoding="utf-8")
        console.print(f"{'wrote' if changed else 'unchanged'} {escape(str(path))}")
