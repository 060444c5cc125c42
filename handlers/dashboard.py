"""The read-only web dashboard (GET only), rendered on the server with autoescaping templates.

    GET /                                  releases by service and environment, pending gates
    GET /deployments/{id}                  timeline, gates and approvals, checks, commits
    GET /deployments/{id}/evidence.json    the release's evidence pack, as a download
    GET /deployments/{id}/evidence.html    the same pack as a printable page
    GET /releases/{id}/evidence.html       a release's evidence pack as a printable page
    GET /audit[?before=<seq>]              the audit log, newest first, and the chain's status
    GET /dora[?days=90&bucket=week|day]    deploy frequency and lead time, as SVG charts
    GET /static/{name}                     the dashboard's own stylesheet (no CDN)

With RELEASEBOT_DASHBOARD_TOKEN set every page needs `Authorization: Bearer <token>` or the
`token` cookie, which a browser gets by opening any page once with `?token=<token>` (it is
then redirected to the same page without the token in its address). The cookie is HttpOnly
and SameSite=Strict and holds an HMAC of the token, not the token; both are compared in
constant time. The stylesheet is public, so the 401 page is styled too.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from typing import TypeVar

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from bot import web
from bot.domain.ingest import revision_label
from bot.usecases import UseCases
from bot.usecases.dashboard import BUCKETS

T = TypeVar("T")
COOKIE = "token"
COOKIE_MAX_AGE = 30 * 24 * 3600
COOKIE_PURPOSE = b"releasebot-dashboard-cookie/1"
AUDIT_PAGE = 50
DORA_DAYS = (7, 365)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.(?:css|svg)")
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# --- access ----------------------------------------------------------------------------------


def _secret(usecases: UseCases) -> str:
    token = usecases.settings.dashboard_token
    return token.get_secret_value() if token is not None else ""


def cookie_value(secret: str) -> str:
    """What the `token` cookie holds: an HMAC of the token, so the cookie never carries it."""
    return hmac.new(secret.encode("utf-8"), COOKIE_PURPOSE, hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def _allowed(request: Request, secret: str) -> bool:
    if not secret:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given.strip() and _same(secret, given.strip()):
        return True
    cookie = request.cookies.get(COOKIE)
    return bool(cookie) and _same(cookie_value(secret), cookie or "")


def _guard(request: Request) -> Response | None:
    """None when the request may see the dashboard; else the answer to give instead."""
    usecases: UseCases = request.state.usecases
    secret = _secret(usecases)
    offered = request.query_params.get("token")
    if offered is not None and secret:
        if not _same(secret, offered):
            return _unauthorized("That token is not valid for this dashboard.")
        return _sign_in(request, secret)
    if not _allowed(request, secret):
        return _unauthorized("This dashboard needs a token.")
    return None


def require_token(request: Request) -> Response | None:
    """The dashboard's sign-in for another page (the sandbox): None when the request carries
    the token (bearer or cookie), else the 401 page or the `?token=` sign-in redirect."""
    return _guard(request)


def _sign_in(request: Request, secret: str) -> Response:
    """Set the cookie and send the browser to the same page without the token in the URL."""
    clean = request.url.remove_query_params("token")
    target = str(URL(path=clean.path, query=clean.query))
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(
        COOKIE,
        cookie_value(secret),
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return _secured(answer)


def _unauthorized(message: str) -> Response:
    answer = _error(401, "Sign-in required", message, hint=True)
    answer.headers["WWW-Authenticate"] = 'Bearer realm="releasebot dashboard"'
    return answer


# --- rendering -------------------------------------------------------------------------------


def _secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _html(body: str, status: int = 200) -> Response:
    return _secured(HTMLResponse(body, status_code=status))


def _error(status: int, title: str, message: str, *, hint: bool = False) -> Response:
    body = web.render(
        "error.html", status=status, title=title, message=message, hint=hint, nav=None
    )
    return _html(body, status)


def _not_found(what: str) -> Response:
    return _error(404, "Not found", f"{what} does not exist.")


def _whole(raw: str | None, *, digits: int = 18) -> int | None:
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > digits:
        return None
    return int(raw)


# --- pages -----------------------------------------------------------------------------------


async def overview_page(request: Request) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    usecases: UseCases = request.state.usecases
    page = await usecases.overview()
    now = usecases.clock.now()
    body = await asyncio.to_thread(web.render, "overview.html", page=page, now=now, nav="releases")
    return _html(body)


async def deployment_detail(request: Request) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    usecases: UseCases = request.state.usecases
    deployment_id = _whole(str(request.path_params["deployment_id"]))
    page = await usecases.deployment_page(deployment_id) if deployment_id is not None else None
    if page is None:
        return _not_found(f"Deployment {str(request.path_params['deployment_id'])[:40]}")
    now = usecases.clock.now()
    body = await asyncio.to_thread(
        web.render, "deployment.html", page=page, now=now, nav="releases"
    )
    return _html(body)


async def evidence_page(request: Request) -> Response:
    """The evidence pack as a printable page, by release id or by one of its deployments."""
    if (refused := _guard(request)) is not None:
        return refused
    usecases: UseCases = request.state.usecases
    by_release = "release_id" in request.path_params
    raw = str(request.path_params["release_id" if by_release else "deployment_id"])
    number = _whole(raw)
    pack = None
    if number is not None:
        find = usecases.evidence_of_release if by_release else usecases.evidence_of_deployment
        pack = await find(number)
    if pack is None:
        return _not_found(f"{'Release' if by_release else 'Deployment'} {raw[:40]}")
    body = await asyncio.to_thread(web.render, "evidence.html", pack=pack, nav="releases")
    return _html(body)


async def deployment_evidence(request: Request) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    usecases: UseCases = request.state.usecases
    deployment_id = _whole(str(request.path_params["deployment_id"]))
    pack = None
    if deployment_id is not None:
        pack = await usecases.evidence_of_deployment(deployment_id)
    if pack is None:
        return _not_found(f"Deployment {str(request.path_params['deployment_id'])[:40]}")
    release = pack["release"]
    label = release.get("version") or revision_label(str(release.get("sha") or ""))
    name = _FILENAME_UNSAFE.sub(
        "_", f"evidence-{release['service']}-{label}-release-{release['id']}"
    )
    content = json.dumps(pack, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    answer = Response(
        content.encode("utf-8"),
        media_type="application/json; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.json"'},
    )
    return _secured(answer)


async def audit_log(request: Request) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    usecases: UseCases = request.state.usecases
    raw = request.query_params.get("before")
    before = _whole(raw) if raw else None
    if raw and before is None:
        return _error(400, "Bad request", "before must be a record number (seq).")
    page = await usecases.audit_page(limit=AUDIT_PAGE, before_seq=before)
    body = await asyncio.to_thread(web.render, "audit.html", page=page, before=before, nav="audit")
    return _html(body)


async def dora_page(request: Request) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    usecases: UseCases = request.state.usecases
    days = _whole(request.query_params.get("days", "90"), digits=3)
    bucket = request.query_params.get("bucket", "week")
    if days is None or not DORA_DAYS[0] <= days <= DORA_DAYS[1]:
        return _error(400, "Bad request", f"days must be {DORA_DAYS[0]} to {DORA_DAYS[1]}.")
    if bucket not in BUCKETS:
        return _error(400, "Bad request", "bucket must be day or week.")
    series = await usecases.dora_series(days=days, bucket=bucket)

    def draw() -> str:
        fmt = "%b %d" if bucket == "week" else "%m-%d"
        labels = [b.start.strftime(fmt) for b in series.buckets]
        return web.render(
            "dora.html",
            series=series,
            deploys=web.bar_chart(
                labels, [b.deploys for b in series.buckets], [b.failed for b in series.buckets]
            ),
            lead=web.line_chart(labels, [b.lead_time_median for b in series.buckets]),
            days=days,
            nav="dora",
        )

    return _html(await asyncio.to_thread(draw))


async def static_file(request: Request) -> Response:
    name = str(request.path_params["path"])
    if not _STATIC_NAME.fullmatch(name):
        return _not_found("That file")
    path = web.STATIC / name
    if not path.is_file():
        return _not_found("That file")
    suffix = path.suffix
    answer = FileResponse(
        path,
        media_type=STATIC_TYPES[suffix],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
    return answer
