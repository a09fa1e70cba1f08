"""``peakwatch grafana push``'s side of Grafana's HTTP API (grafana-client): the folder, the dashboards,
and one sentence for each way it can fail.

grafana-client (and its HTTP stack) is imported inside the functions that talk to Grafana only:
importing it costs every other `peakwatch` command about 150 ms.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cli.grafana.dashboards import dashboards
from peakwatch.errors import PushError

if TYPE_CHECKING:
    from grafana_client.api import GrafanaApi  # type: ignore[import-untyped, unused-ignore]


__all__ = ["PushError", "api_for", "explain", "push_dashboards"]


def api_for(url: str, token: str, org_id: int | None) -> GrafanaApi:
    """A client for ``url`` (``http(s)://host[:port][/prefix]``). ``GrafanaApi.from_url`` cannot take an
    organisation and drops the slash before ``api`` under a path prefix, so the URL is split here."""
    from grafana_client.api import GrafanaApi  # type: ignore[import-untyped, unused-ignore]

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise PushError(f"--url must be http(s)://host[:port][/path], not {url!r}")
    prefix = parts.path.strip("/")
    # A plain string is sent as ``Authorization: Bearer <token>`` (grafana-client wraps it in TokenAuth).
    return GrafanaApi(
        auth=token,
        host=parts.hostname,
        port=port,
        protocol=parts.scheme,
        url_path_prefix=f"{prefix}/" if prefix else "",
        organization_id=org_id,
        timeout=10.0,
    )


def _folder_uid(title: str) -> str:
    """A stable folder uid from its title (Grafana uids: at most 40 of ``[a-zA-Z0-9_-]``)."""
    uid = re.sub(r"[^a-zA-Z0-9_-]+", "-", title.strip().lower()).strip("-")[:40]
    return uid or "peakwatch"


def _exists(call: Any, *args: Any) -> bool:
    """Whether a GET finds the object: 404 is no, other errors go up."""
    from grafana_client.client import GrafanaClientError  # type: ignore[import-untyped, unused-ignore]

    try:
        call(*args)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return False
        raise
    return True


def _find_or_create_folder(api: GrafanaApi, title: str) -> str:
    """The uid of the folder titled ``title``, made when missing. Looked up by title first: a folder
    made by hand keeps its uid, and Grafana refuses a second folder of the same title."""
    folders = api.folder.get_all_folders()  # type: ignore[no-untyped-call, unused-ignore]
    for existing in folders if isinstance(folders, list) else []:
        if isinstance(existing, dict) and existing.get("title") == title:
            return str(existing["uid"])
    uid = _folder_uid(title)
    if not _exists(api.folder.get_folder, uid):
        api.folder.create_folder(title, uid=uid)  # type: ignore[no-untyped-call, unused-ignore]
    return uid


def push_dashboards(api: GrafanaApi, folder: str) -> list[tuple[str, str, str, str]]:
    """Create the folder when missing, then create or overwrite every dashboard in it. Returns
    ``(title, uid, created|updated, url)`` per dashboard."""
    folder_uid = _find_or_create_folder(api, folder)
    done: list[tuple[str, str, str, str]] = []
    for dashboard in dashboards():
        uid = str(dashboard["uid"])
        action = "updated" if _exists(api.dashboard.get_dashboard, uid) else "created"
        answer = api.dashboard.update_dashboard(  # type: ignore[no-untyped-call, unused-ignore]
            {
                "dashboard": dashboard,
                "folderUid": folder_uid,
                "overwrite": True,
                "message": "peakwatch grafana push",
            }
        )
        url = str(answer.get("url", "")) if isinstance(answer, dict) else ""
        done.append((str(dashboard["title"]), uid, action, url))
    return done


def explain(exc: Exception, url: str) -> str:
    """One sentence for what went wrong, naming the fix."""
    from grafana_client.client import (  # type: ignore[import-untyped, unused-ignore]
        GrafanaClientError,
        GrafanaException,
        GrafanaUnauthorizedError,
    )

    if isinstance(exc, GrafanaUnauthorizedError):
        return (
            f"Grafana at {url} refused the token (401 Unauthorized): check --token (a service-account "
            "token with the Editor or Admin role)"
        )
    if isinstance(exc, GrafanaClientError) and exc.status_code == 403:
        return f"the token may not change dashboards or folders at {url} (403): give it the Editor role"
    if isinstance(exc, GrafanaException):
        return f"Grafana at {url} answered with an error: {exc.message}"
    reason = "connection refused" if "refused" in str(exc).lower() else str(exc)
    return f"cannot reach Grafana at {url}: {reason} (is it running, and is --url right?)"
