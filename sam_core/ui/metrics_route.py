"""``GET /metrics`` for Prometheus on the app's own server, behind the same ``--auth``.

The exporter (:class:`sam_core.monitor.metrics.MetricsExporter`) observes every run the Studio
logs; the route hands its exposition to Gradio's FastAPI app when the app is created.
"""

from __future__ import annotations

from typing import Any


def attach_metrics(studio: Any, rules_path: str | None = None) -> Any:
    """A MetricsExporter fed by every run ``studio`` logs (its own registry: one per server)."""
    from sam_core.monitor.alerts import load_rules
    from sam_core.monitor.metrics import MetricsExporter

    exporter = MetricsExporter(studio.runlog.path.parent, load_rules(rules_path))
    studio.observers.append(exporter.observe)
    return exporter


def metrics_route(exporter: Any) -> Any:
    """The route of ``GET /metrics`` (Prometheus text format), for ``launch(app_kwargs={"routes": [...]})``.

    Given to Gradio's FastAPI app when it is created, so it answers from the server's first
    request. Authorised when Gradio's own ``login_check`` passes (its session cookie, from
    ``POST /login``; looked up on Gradio's app at the first request), or with HTTP Basic
    credentials of the same ``--auth`` account (what a Prometheus scrape job sends). Without
    ``--auth`` it is open, like the rest of the app.
    """
    import base64
    import hmac
    import inspect

    from fastapi import Depends, HTTPException, Request, Response
    from fastapi.routing import APIRoute

    gradio_checks: list[Any] = []  # Gradio's get_current_user and login_check, as its own routes use them

    def gradio_auth(server_app: Any) -> list[Any]:
        if not gradio_checks:
            routes: dict[str, Any] = {}
            stack = list(server_app.routes)
            while stack:  # FastAPI >= 0.12x keeps an included router (Gradio's /gradio_api/...) as one entry
                route = stack.pop()
                inner = getattr(route, "original_router", None)
                if inner is not None:
                    stack.extend(inner.routes)
                elif getattr(route, "path", None):
                    routes.setdefault(route.path, route)
            gradio_checks[:] = [routes["/gradio_api/user"].endpoint, routes["/gradio_api/login_check"].endpoint]
        return gradio_checks

    async def basic_ok(request: Request) -> bool:
        auth = request.app.auth
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or auth is None:
            return False
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except ValueError:
            return False
        if not sep:
            return False
        if callable(auth):
            ok = auth(user, password)
            return bool(await ok if inspect.isawaitable(ok) else ok)
        return user in auth and hmac.compare_digest(password.encode(), str(auth[user]).encode())

    async def authorised(request: Request) -> None:
        current_user, login_check = gradio_auth(request.app)
        try:
            login_check(await current_user(request))
        except HTTPException:
            if not await basic_ok(request):
                raise HTTPException(
                    status_code=401,
                    detail="Not authenticated",
                    headers={"WWW-Authenticate": 'Basic realm="SAM Studio metrics"'},
                ) from None

    # FastAPI resolves string annotations in this module's globals, where these names are not.
    authorised.__annotations__ = {"request": Request, "return": None}

    def metrics() -> Response:
        body, content_type = exporter.exposition()
        return Response(body, media_type=content_type)

    metrics.__annotations__ = {"return": Response}
    return APIRoute("/metrics", metrics, methods=["GET"], dependencies=[Depends(authorised)], include_in_schema=False)
