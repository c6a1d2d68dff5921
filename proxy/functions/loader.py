"""Finding edge functions (``resolve``) and calling them safely (``FunctionSet``).

``FunctionSet.from_config`` is called once per behaviour when the runtime is built (start-up and reload),
so that a missing module or function, or one that cannot take the event's arguments, is reported before
any request, naming the spec. Per request the pipeline awaits one ``FunctionSet`` method per event.

The contract of every call:

- **Time bound**: each call is bounded by ``timeout`` seconds (``asyncio.timeout``).
- **async def** functions run on the event loop, inline: the fastest way (a few microseconds of overhead;
  one that returns without awaiting does not even arm the timer), but such a function must not block:
  the timeout interrupts it only at an ``await``.
- **plain def** functions run in a small pool of daemon threads (``SYNC_THREADS``), never on the event
  loop, so a slow or blocking one cannot stall other requests and its timeout always fires. The thread hop
  costs some tens of microseconds per call; a thread cannot be killed, so a function that never returns
  keeps its thread (the daemon threads do not hold up the worker's exit). Sync functions may run
  concurrently: module-level state they share needs a lock. A dedicated pool rather than the loop's
  default executor, because aiohttp resolves origin host names in the default executor: slow functions
  must not starve DNS.
- **Errors**: a function that raises (anything but the cancellation of the request itself), times out,
  returns something its event does not accept, or leaves an invalid header (a non-text value, a line break)
  raises ``FunctionError(event, spec, cause)``. ``FunctionSet`` writes the log line, naming the function,
  the event and the cause (with the traceback the first time a function fails with a given exception
  type). The pipeline answers the request with a 502 (or the behaviour's error page) and must not use the
  objects handed to the function afterwards.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.functions.api import Event, RequestInfo, Response, ViewerRequest

if TYPE_CHECKING:
    from proxy.settings.model import FunctionsConfig

__all__ = [
    "DEFAULT_TIMEOUT",
    "SYNC_THREADS",
    "ContractError",
    "FunctionError",
    "FunctionLoadError",
    "FunctionSet",
    "LoadProblem",
    "resolve",
]

log = logging.getLogger("edgeproxy.functions")

DEFAULT_TIMEOUT: Final = 1.0  # seconds per call
SYNC_THREADS: Final = 16  # threads running plain (sync) functions, per worker process

T = TypeVar("T")

_ARGUMENTS: Final[Mapping[Event, tuple[str, ...]]] = {
    Event.VIEWER_REQUEST: ("request",),
    Event.ORIGIN_REQUEST: ("request",),
    Event.ORIGIN_RESPONSE: ("request", "response"),
    Event.VIEWER_RESPONSE: ("request", "response"),
}
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field name
_BAD_VALUE_RE = re.compile(r"[\x00\r\n]")
_LOGGED_LIMIT = 1024  # (spec, exception type) pairs whose traceback was logged, remembered up to this many


# --------------------------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """Why one function spec could not be used; ``event`` is None when ``resolve`` was called alone."""

    spec: str
    reason: str
    event: Event | None = None

    def __str__(self) -> str:
        where = f"functions.{self.event}: " if self.event is not None else ""
        return f"{where}edge function {self.spec!r}: {self.reason}"


class FunctionLoadError(ValueError):
    """One or more function specs cannot be used (raised at load time, never per request)."""

    def __init__(self, problems: Sequence[LoadProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


def resolve(spec: str, *, paths: Sequence[str | os.PathLike[str]] = ()) -> Callable[..., Any]:
    """The callable named by ``spec`` (``package.module:function``, or ``module:Class.method``).

    Called at load time (``FunctionSet.from_config``; config checks may call it too). Imports the module
    (once per process: a reload does not re-import a module already imported). ``paths`` are directories
    appended to ``sys.path`` first, such as the config file's directory. Raises ``FunctionLoadError``
    naming the spec when the spec is malformed, the module is missing or fails to import, the attribute is
    missing, or it is not callable.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise FunctionLoadError([LoadProblem(spec, "expected package.module:function")])
    for path in paths:
        entry = os.fspath(path)
        if entry not in sys.path:
            sys.path.append(entry)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            reason = f"module {module_name!r} not found (is it installed, or on PYTHONPATH?)"
        else:
            reason = f"importing module {module_name!r} failed: {exc}"
        raise FunctionLoadError([LoadProblem(spec, reason)]) from None
    except (Exception, SystemExit) as exc:
        reason = f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        raise FunctionLoadError([LoadProblem(spec, reason)]) from exc
    target: object = module
    walked = module_name
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            reason = f"{walked!r} has no attribute {part!r}"
            raise FunctionLoadError([LoadProblem(spec, reason)]) from None
        walked = f"{walked}.{part}" if walked != module_name else f"{module_name}:{part}"
    if not callable(target):
        reason = f"{spec} is not callable (it is a {type(target).__name__})"
        raise FunctionLoadError([LoadProblem(spec, reason)])
    return target


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    return call is not None and inspect.iscoroutinefunction(call)


def _arity_problem(event: Event, spec: str, fn: Callable[..., Any]) -> LoadProblem | None:
    """A problem when ``fn`` cannot be called with the event's positional arguments."""
    names = _ARGUMENTS[event]
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # no signature to check (some builtins): the call itself will tell
    try:
        signature.bind(*names)
    except TypeError as exc:
        wanted = ", ".join(names)
        return LoadProblem(spec, f"{event} functions are called as f({wanted}): {exc}", event)
    return None


def _spec_of(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}:{name}"


# --------------------------------------------------------------------------------------------- threads


class _DaemonThreads:
    """A small pool of daemon threads for sync functions, started on demand up to ``size``.

    Daemon threads, unlike ``ThreadPoolExecutor``'s, do not keep a worker process alive at exit when a
    function never returns. A submitted call that was cancelled before a thread took it is skipped.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]]
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, fn: Callable[..., T], args: tuple[Any, ...]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((future, fn, args))
        with self._lock:
            if self._threads < self._size and self._queue.qsize() > self._idle:
                self._threads += 1
                name = f"edge-function-{self._threads}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            future, fn, args = self._queue.get()
            with self._lock:
                self._idle -= 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)


_pool: tuple[int, _DaemonThreads] | None = None


def _threads() -> _DaemonThreads:
    """The process's pool (made again in a forked child: threads do not survive a fork)."""
    global _pool
    pid = os.getpid()
    if _pool is None or _pool[0] != pid:
        _pool = (pid, _DaemonThreads(SYNC_THREADS))
    return _pool[1]


# --------------------------------------------------------------------------------------------- calling


class FunctionError(Exception):
    """An edge function failed for one request: it raised ``cause``, timed out (``timed_out``; ``cause`` is
    the ``TimeoutError``), or broke its event's contract. The pipeline answers 502; the log line was
    written by ``FunctionSet``."""

    def __init__(
        self, event: Event, spec: str, cause: BaseException, *, timeout: float | None = None
    ) -> None:
        self.event = event
        self.spec = spec
        self.cause = cause
        self.timed_out = timeout is not None
        if timeout is not None:
            message = f"edge function {spec} ({event}) did not return within {timeout:g} s"
        else:
            detail = str(cause)
            message = f"edge function {spec} ({event}) failed: {type(cause).__name__}" + (
                f": {detail}" if detail else ""
            )
        super().__init__(message)


class ContractError(Exception):
    """A function's result broke its event's contract (the ``cause`` of such a ``FunctionError``)."""


class _Resumed:
    """Awaiting a coroutine whose first step already ran and yielded ``step``: the rest of what
    ``await coroutine`` does (results, exceptions and cancellation pass through to it)."""

    __slots__ = ("_coro", "_step")

    def __init__(self, coro: Coroutine[Any, Any, Any], step: object) -> None:
        self._coro = coro
        self._step = step

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, step = self._coro, self._step
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    step = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    step = coro.send(sent)
                except StopIteration as done:
                    return done.value


@dataclass(frozen=True, slots=True)
class _Bound:
    spec: str
    fn: Callable[..., Any]
    is_async: bool


def _header_problem(headers: CIMultiDict[str] | CIMultiDictProxy[str], where: str) -> str | None:
    """What is wrong with the first invalid field in ``headers`` (checked after every call), or None."""
    # Fast path, one pass over all fields: valid names concatenate into a token, valid values into text
    # without CR, LF or NUL. Only a failure walks the fields one by one to name the culprit.
    try:
        names = "".join(headers.keys())
        values = "".join(headers.values())
    except TypeError:  # a value that is not text
        pass
    else:
        valid_names = not names or (_TOKEN_RE.fullmatch(names) is not None and all(headers.keys()))
        if valid_names and not _BAD_VALUE_RE.search(values):
            return None
    for name, value in headers.items():
        if not isinstance(value, str):
            return f"{where} header {name!r} has a value that is not text: {value!r}"
        if _BAD_VALUE_RE.search(value):
            return f"{where} header {name!r} has a line break or NUL in its value"
        if not _TOKEN_RE.fullmatch(name):
            return f"{where} header name {name!r} is not a valid field name"
    return None


class FunctionSet:
    """The functions of one behaviour, ready to call. Built once (``from_config``) per behaviour.

    The four event methods each return at once when the behaviour has no function for that event; they
    raise ``FunctionError`` when the function fails (see the module docstring for the contract).
    """

    __slots__ = (
        "_logged",
        "_origin_request",
        "_origin_response",
        "_viewer_request",
        "_viewer_response",
        "failures",
        "timeout",
    )

    def __init__(
        self,
        functions: Mapping[Event | str, Callable[..., Any]],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        specs: Mapping[Event | str, str] | None = None,
    ) -> None:
        """``functions`` maps events to callables (``specs`` names them in errors and logs; by default
        ``module:qualname``). Raises ``FunctionLoadError`` listing every function that cannot take its
        event's arguments, ``ValueError`` for an unknown event or a timeout that is not positive."""
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.failures: dict[Event, int] = {}  # failed calls per event, for stats
        self._logged: set[tuple[str, type[BaseException]]] = set()
        names = {Event(key): value for key, value in (specs or {}).items()}
        bound: dict[Event, _Bound] = {}
        problems: list[LoadProblem] = []
        for key, fn in functions.items():
            event = Event(key)
            spec = names.get(event) or _spec_of(fn)
            problem = _arity_problem(event, spec, fn)
            if problem is not None:
                problems.append(problem)
                continue
            bound[event] = _Bound(spec, fn, _is_async(fn))
        if problems:
            raise FunctionLoadError(problems)
        self._viewer_request = bound.get(Event.VIEWER_REQUEST)
        self._origin_request = bound.get(Event.ORIGIN_REQUEST)
        self._origin_response = bound.get(Event.ORIGIN_RESPONSE)
        self._viewer_response = bound.get(Event.VIEWER_RESPONSE)

    @classmethod
    def from_config(
        cls,
        config: FunctionsConfig | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        paths: Sequence[str | os.PathLike[str]] = (),
    ) -> FunctionSet | None:
        """The functions of a behaviour's ``functions`` section, resolved and checked; None when it names
        none (so the pipeline skips every event at no cost). Called when the runtime is built (start-up,
        reload). Raises ``FunctionLoadError`` listing every problem (each naming its event and spec)."""
        if config is None:
            return None
        specs: dict[Event | str, str] = {}
        for event in Event:
            spec = getattr(config, event.value)
            if spec is not None:
                specs[event] = spec
        if not specs:
            return None
        functions: dict[Event | str, Callable[..., Any]] = {}
        problems: list[LoadProblem] = []
        for key, spec in specs.items():
            event = Event(key)
            try:
                fn = resolve(spec, paths=paths)
            except FunctionLoadError as exc:
                problems.extend(LoadProblem(p.spec, p.reason, event) for p in exc.problems)
                continue
            problem = _arity_problem(event, spec, fn)
            if problem is not None:
                problems.append(problem)
            else:
                functions[event] = fn
        if problems:
            raise FunctionLoadError(problems)
        return cls(functions, timeout=timeout, specs=specs)

    def has(self, event: Event) -> bool:
        """Whether a function is configured for ``event`` (build the event's objects only then)."""
        return self._bound(event) is not None

    def spec(self, event: Event) -> str | None:
        """The ``module:function`` configured for ``event``, or None."""
        bound = self._bound(event)
        return bound.spec if bound is not None else None

    def _bound(self, event: Event) -> _Bound | None:
        if event is Event.VIEWER_REQUEST:
            return self._viewer_request
        if event is Event.ORIGIN_REQUEST:
            return self._origin_request
        if event is Event.ORIGIN_RESPONSE:
            return self._origin_response
        return self._viewer_response

    # ------------------------------------------------------------------ events

    async def viewer_request(self, request: ViewerRequest) -> Response | None:
        """RECV, every request, before the cache. The function may change ``request`` (path, query,
        headers: the cache key is built from them); a ``Response`` it returns answers the viewer (not
        stored). None: continue with ``request``."""
        bound = self._viewer_request
        if bound is None:
            return None
        result = await self._call(Event.VIEWER_REQUEST, bound, (request,))
        return self._request_result(Event.VIEWER_REQUEST, bound, request, result)

    async def origin_request(self, request: ViewerRequest) -> Response | None:
        """FETCH, before each request the edge sends to an origin. The function may change ``request``
        (path, query, headers of the origin request; not the cache key); a ``Response`` it returns stands
        in for the origin's. None: send ``request``."""
        bound = self._origin_request
        if bound is None:
            return None
        result = await self._call(Event.ORIGIN_REQUEST, bound, (request,))
        return self._request_result(Event.ORIGIN_REQUEST, bound, request, result)

    async def origin_response(self, request: RequestInfo, response: Response) -> None:
        """STORE, on a response from the origin, before it is stored. The function changes ``response``
        in place (status, headers, body): what the edge then stores and sends."""
        bound = self._origin_response
        if bound is None:
            return
        if response.event is not Event.ORIGIN_RESPONSE:
            raise TypeError("origin_response takes Response.for_event(Event.ORIGIN_RESPONSE, ...)")
        result = await self._call(Event.ORIGIN_RESPONSE, bound, (request, response))
        self._response_result(Event.ORIGIN_RESPONSE, bound, response, result)

    async def viewer_response(self, request: RequestInfo, response: Response) -> None:
        """DELIVER, on every response to the viewer, after the cache. The function changes status and
        headers in place, for this viewer only (never stored); the body is read-only."""
        bound = self._viewer_response
        if bound is None:
            return
        if response.event is not Event.VIEWER_RESPONSE:
            raise TypeError("viewer_response takes Response.for_event(Event.VIEWER_RESPONSE, ...)")
        result = await self._call(Event.VIEWER_RESPONSE, bound, (request, response))
        self._response_result(Event.VIEWER_RESPONSE, bound, response, result)

    # ------------------------------------------------------------------ machinery

    async def _call(self, event: Event, bound: _Bound, args: tuple[Any, ...]) -> object:
        scope = asyncio.timeout_at(asyncio.get_running_loop().time() + self.timeout)
        try:
            result: object
            if bound.is_async:
                result = bound.fn(*args)
                if inspect.iscoroutine(result):
                    # Run the first step here: a function that returns without ever waiting (the quick
                    # kind most are) needs no timer, and no timer could have interrupted it anyway.
                    try:
                        step = result.send(None)
                    except StopIteration as done:
                        return done.value
                    result = _Resumed(result, step)
            async with scope:
                if not bound.is_async:
                    result = await asyncio.wrap_future(_threads().submit(bound.fn, args))
                if inspect.isawaitable(result):
                    result = await result
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the request itself is being cancelled (viewer gone, shutdown): not the function
            raise self._failed(event, bound, exc) from exc
        except (Exception, SystemExit) as exc:
            timed_out = isinstance(exc, TimeoutError) and scope.expired()
            raise self._failed(event, bound, exc, timed_out=timed_out) from exc
        return result

    def _request_result(
        self, event: Event, bound: _Bound, request: ViewerRequest, result: object
    ) -> Response | None:
        if result is not None and not isinstance(result, Response):
            cause = ContractError(
                f"{event} functions return a Response (to answer) or None (to go on), "
                f"not {type(result).__name__}"
            )
            raise self._failed(event, bound, cause)
        problem = _header_problem(request.headers, "request")
        if problem is None and result is not None:
            problem = _header_problem(result.headers, "response")
        if problem is not None:
            raise self._failed(event, bound, ContractError(problem))
        return result

    def _response_result(self, event: Event, bound: _Bound, response: Response, result: object) -> None:
        if result is not None and result is not response:
            cause = ContractError(
                f"{event} functions change the response they are given and return None, "
                f"not {type(result).__name__}"
            )
            raise self._failed(event, bound, cause)
        problem = _header_problem(response.headers, "response")
        if problem is not None:
            raise self._failed(event, bound, ContractError(problem))

    def _failed(
        self, event: Event, bound: _Bound, cause: BaseException, *, timed_out: bool = False
    ) -> FunctionError:
        """The error to raise for a failed call, after writing its log line."""
        error = FunctionError(event, bound.spec, cause, timeout=self.timeout if timed_out else None)
        self.failures[event] = self.failures.get(event, 0) + 1
        seen = (bound.spec, type(cause))
        if timed_out or isinstance(cause, ContractError) or seen in self._logged:
            log.error("%s", error)
        else:
            if len(self._logged) < _LOGGED_LIMIT:
                self._logged.add(seen)
            log.error("%s", error, exc_info=cause)
        return error
