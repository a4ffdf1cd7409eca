"""Who acts: the actor attached to every audit event written inside a block.

An audit context (``core.audit.runtime.audit_context``, pghistory's
``pghistory.context`` made safe for this code base) hands its metadata to the
database with every write statement; the audit triggers store it once per
context in ``pghistory_context`` and point each event at it. The metadata
says who acted:

``actor``       ``user:<id>``, ``partner:<id>`` or ``system:<name>`` (``Caller.ref``)
``user``        the Django user's id (and ``username``), when a user acted
``partner``     the partner's id (and ``partner_name``, ``api_key``: the key's id)
``system``      the command or task name, for ``system:`` actors
``request_id``  the request's ``X-Request-ID`` (``core.api.scope.request_id_of``),
                plus ``method`` and ``path``

Where the actor comes from, in each path:

* a request to the site or the admin: ``AuditContextMiddleware`` opens the
  context with the logged-in user and the request id (write methods only);
* an API request: ``ScopedViewMixin.initial`` names the partner and key of
  ``request.auth`` (or the session user) once DRF has authenticated it;
* a management command: every command runs in a context naming it
  (``install_command_context``), except the servers, whose requests and
  tasks name their own;
* a django-q2 task: ``pre_execute`` opens a context naming the task's
  function, ``post_execute_in_worker`` closes it;
* a service called directly: a service that is told who acts (a ``Caller``, a
  user) wraps its write in ``acting(...)``.

An outer context wins: a command or task started from a request, or a service
called from a view, keeps the request's actor, and ``acting`` only fills in
what is missing. The context holds one actor per request, command or task;
what differs per change (a status reason) is a column of the audited row.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

from core.api.principal import ApiPrincipal
from core.audit.runtime import active, audit_context
from core.caller import Caller


def current() -> dict[str, Any] | None:
    """The metadata of the audit context this thread is in, or None outside any."""
    context = active()
    return context.metadata if context is not None else None


def annotate(**metadata: Any) -> None:
    """Add to (or overwrite in) the current audit context; nothing outside one."""
    context = active()
    if context is not None:
        context.metadata.update({k: v for k, v in metadata.items() if v not in (None, "")})


def user_metadata(user: Any) -> dict[str, Any]:
    if getattr(user, "pk", None) is None or not getattr(user, "is_authenticated", False):
        return {}
    return {
        "actor": f"user:{user.pk}",
        "user": user.pk,
        "username": user.get_username() if hasattr(user, "get_username") else str(user),
    }


def principal_metadata(principal: Any) -> dict[str, Any]:
    """A partner acting through an API key (``core.api.principal.ApiPrincipal``)."""
    return {
        "actor": f"partner:{principal.partner_id}",
        "partner": principal.partner_id,
        "partner_name": principal.partner_name,
        "api_key": principal.key_id,
    }


def caller_metadata(caller: Caller) -> dict[str, Any]:
    metadata: dict[str, Any] = {"actor": caller.ref}
    if caller.user is not None:
        metadata.update(user_metadata(caller.user))
        metadata["actor"] = caller.ref
    if caller.partner_id is not None:
        metadata["partner"] = caller.partner_id
    kind, _, name = caller.ref.partition(":")
    if kind == "system" and name:
        metadata["system"] = name
    if caller.request_id:
        metadata["request_id"] = caller.request_id
    return {k: v for k, v in metadata.items() if v not in (None, "")}


def system_metadata(name: str, **extra: Any) -> dict[str, Any]:
    return {"actor": f"system:{name}", "system": name, **extra}


@contextlib.contextmanager
def acting(
    caller: Caller | None = None, *, user: Any = None, ref: str | None = None, **metadata: Any
) -> Iterator[dict[str, Any]]:
    """Run a block as ``caller`` (or ``user``): its audit events name that actor.

    Inside an audit context that already names an actor (a request, a command),
    the outer actor stays and only missing keys are added; otherwise the block
    gets a context of its own.
    """
    given: dict[str, Any] = {}
    if user is not None:
        given.update(user_metadata(user))
    if caller is not None:
        given.update(caller_metadata(caller))
    if ref:  # a Caller.ref ("partner:3"): it names the actor even beside a user
        given.update(caller_metadata(Caller(ref=ref)))
    given.update({k: v for k, v in metadata.items() if v not in (None, "")})
    outer = current()
    if outer is None and not given:
        yield {}  # nobody to name: a context without an actor would say nothing
        return
    if outer is not None:
        if outer.get("actor"):
            given = {k: v for k, v in given.items() if k not in outer and k != "actor"}
        outer.update(given)
        yield outer
        return
    with audit_context(**given) as context:
        yield context.metadata


def actor_from(
    *, caller: str | None = None, user: str | None = None, ref: str | None = None
) -> Callable:
    """Decorate a service: it acts as the keyword arguments named here (see ``acting``):
    ``caller`` a ``Caller``, ``user`` a Django user, ``ref`` a ``Caller.ref`` string."""

    def decorate(service: Callable) -> Callable:
        @functools.wraps(service)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with acting(
                kwargs.get(caller) if caller else None,
                user=kwargs.get(user) if user else None,
                ref=kwargs.get(ref) if ref else None,
            ):
                return service(*args, **kwargs)

        return wrapper

    return decorate


# --------------------------------------------------------------------------- django-q2 tasks

_task_contexts = threading.local()


def task_started(sender: Any = None, func: Any = None, task: dict | None = None, **kwargs: Any):
    """``pre_execute``: a task outside any audit context runs as ``system:<function>``."""
    if current() is not None:
        _task_contexts.stack = [*getattr(_task_contexts, "stack", []), None]
        return
    task = task or {}
    name = _function_name(func if func is not None else task.get("func"))
    context = audit_context(
        **system_metadata(name, task=task.get("name") or "", task_id=task.get("id") or "")
    )
    context.__enter__()
    _task_contexts.stack = [*getattr(_task_contexts, "stack", []), context]


def task_finished(sender: Any = None, **kwargs: Any) -> None:
    """``post_execute_in_worker``: close what ``task_started`` opened."""
    stack = getattr(_task_contexts, "stack", [])
    if not stack:
        return
    context = stack.pop()
    if context is not None:
        context.__exit__(None, None, None)


def _function_name(func: Any) -> str:
    if isinstance(func, str):
        return func
    module = getattr(func, "__module__", "") or ""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    return f"{module}.{name}" if module else name


# --------------------------------------------------------------------------- management commands

# Commands that serve requests or tasks, each of which names its own actor, or that
# hand the session to a person (shell): they run outside any command context.
UNATTRIBUTED_COMMANDS = frozenset(
    {"runserver", "qcluster", "shell", "dbshell", "testserver", "test", "qmonitor", "qinfo"}
)
_installed = False


def command_name(command: Any) -> str:
    return type(command).__module__.rsplit(".", 1)[-1]


def install_command_context() -> None:
    """Run every management command (``manage.py`` or ``call_command``) as ``system:<name>``.

    Django has no hook around a command, so ``BaseCommand.execute`` is wrapped,
    once, when the audit app is ready. Inside an audit context that already
    names an actor (a command called from a request or from another command),
    the outer actor stays.
    """
    global _installed
    if _installed:
        return
    from django.core.management.base import BaseCommand

    original = BaseCommand.execute

    def execute(self: Any, *args: Any, **options: Any) -> Any:
        name = command_name(self)
        if name in UNATTRIBUTED_COMMANDS:
            return original(self, *args, **options)
        with acting(**system_metadata(name, command=name)):
            return original(self, *args, **options)

    execute.__wrapped__ = original  # type: ignore[attr-defined]
    BaseCommand.execute = execute  # type: ignore[method-assign]
    _installed = True


# --------------------------------------------------------------------------- API requests


def annotate_api_request(request: Any) -> None:
    """Name the API caller in the request's context, once DRF has authenticated it."""
    if current() is None:
        return
    principal = getattr(request, "auth", None)
    if isinstance(principal, ApiPrincipal):
        annotate(**principal_metadata(principal))
    else:
        annotate(**user_metadata(getattr(request, "user", None)))
