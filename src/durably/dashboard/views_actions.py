"""The buttons: cancel, resume, fork from a step; each confirmed, CSRF-checked, POST only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from durably.dashboard.security import Refused, checked_form
from durably.dashboard.state import Shared, shared
from durably.dashboard.views_workflow import not_found
from durably.errors import DurablyError, WorkflowNotFound

Action = Callable[[Shared, str, FormData], Awaitable[str]]


async def _cancel(app: Shared, workflow_id: str, form: FormData) -> str:
    await app.client.cancel_async(workflow_id, children=form.get("children") == "yes")
    return _page(workflow_id, "cancelled")


async def _resume(app: Shared, workflow_id: str, form: FormData) -> str:
    await app.client.resume_async(workflow_id)
    return _page(workflow_id, "resumed")


async def _fork(app: Shared, workflow_id: str, form: FormData) -> str:
    raw = str(form.get("from_step", "")).strip()
    if not raw.isdigit() or int(raw) < 1:
        raise Refused(400, f"the step to fork from must be a step number >= 1, got {raw!r}")
    from_step = int(raw)
    steps = await app.client.list_steps_async(workflow_id)
    last = max((step.step for step in steps), default=0)
    if from_step > max(last, 1):
        recorded = f"its last recorded step is {last}" if last else "it recorded no steps"
        raise Refused(
            400,
            f"step {from_step} is beyond the last step of {workflow_id!r}: {recorded}; "
            f"fork from 1 to {max(last, 1)}",
        )
    forked = await app.client.fork_async(workflow_id, from_step)
    return _page(forked.id, f"forked from {workflow_id} at step {from_step}")


ACTIONS: dict[str, tuple[Action, str]] = {
    "cancel": (_cancel, "Cancel"),
    "resume": (_resume, "Resume"),
    "fork": (_fork, "Fork"),
}


async def act(request: Request) -> Response:
    """Run one action on a workflow after the checks; without ``confirmed=yes`` (no
    script ran the dialog) a page asks first."""
    app = shared(request)
    workflow_id = request.path_params["workflow_id"]
    action = request.path_params["action"]
    try:
        form = await checked_form(request, app.settings)
        if action not in ACTIONS:
            raise Refused(404, f"no action {action!r}; use cancel, resume or fork")
        run, label = ACTIONS[action]
        if form.get("confirmed") != "yes":
            fields = {k: str(v) for k, v in form.items() if k not in ("csrf", "confirmed")}
            return app.pages.render(
                request,
                "confirm.html",
                action=action,
                label=label,
                workflow_id=workflow_id,
                fields=sorted(fields.items()),
            )
        target = await run(app, workflow_id, form)
    except Refused as exc:
        return app.pages.problem(request, exc.status, "Refused", exc.reason)
    except WorkflowNotFound:
        return not_found(request, workflow_id)
    except DurablyError as exc:
        return app.pages.problem(request, 400, "Could not do it", str(exc))
    return RedirectResponse(target, status_code=303)


def _page(workflow_id: str, done: str) -> str:
    return f"/workflows/{quote(workflow_id, safe='')}?done={quote(done)}"
