"""Finding and calling edge functions (proxy.functions.loader): load errors, sync and async functions, the
time bound, failures, and the contract of each event."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from proxy.functions import (
    Event,
    FunctionError,
    FunctionLoadError,
    FunctionSet,
    RequestInfo,
    Response,
    ViewerRequest,
    resolve,
    respond,
)
from proxy.functions import loader as loader_module
from proxy.functions.loader import ContractError, _DaemonThreads
from proxy.settings.model import FunctionsConfig

HERE = "tests.unit.test_functions_loader"


# Functions named by spec in these tests.
async def add_header(request: ViewerRequest) -> None:
    request.headers["X-Added"] = "async"


def add_header_sync(request: ViewerRequest) -> None:
    request.headers["X-Added"] = threading.current_thread().name


async def tag_response(request: RequestInfo, response: Response) -> None:
    response.headers["X-Tagged"] = request.path


NOT_CALLABLE = 42


class Handlers:
    @staticmethod
    async def block(request: ViewerRequest) -> Response:
        return respond(403, "no")


def two_arguments(request: Any, response: Any) -> None:
    return None


def viewer(**headers: str) -> ViewerRequest:
    return ViewerRequest("GET", "/page", "", dict(headers), "192.0.2.1", "example.com", "http")


def info(event: Event = Event.VIEWER_RESPONSE) -> RequestInfo:
    return RequestInfo("GET", "/page", "", {}, "192.0.2.1", "example.com", "http", event)


def viewer_response(body: bytes = b"body") -> Response:
    return Response.for_event(Event.VIEWER_RESPONSE, 200, CIMultiDict(), body)


def origin_response(body: bytes | None = b"body") -> Response:
    return Response.for_event(Event.ORIGIN_RESPONSE, 200, CIMultiDict(), body)


@pytest.fixture
def released() -> Iterator[threading.Event]:
    """An event that sync test functions block on; set after the test so their threads finish."""
    event = threading.Event()
    yield event
    event.set()


# --------------------------------------------------------------------------------------------- resolve


def test_resolve_a_function_and_a_nested_attribute() -> None:
    assert resolve(f"{HERE}:add_header") is add_header
    assert resolve(f"{HERE}:Handlers.block") is Handlers.block


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_package.hooks:f", "module 'no_such_package.hooks' not found"),
        ("proxy.no_such_module:f", "module 'proxy.no_such_module' not found"),
        (f"{HERE}:missing", f"'{HERE}' has no attribute 'missing'"),
        (f"{HERE}:Handlers.missing", f"'{HERE}:Handlers' has no attribute 'missing'"),
        (f"{HERE}:NOT_CALLABLE", "is not callable (it is a int)"),
        ("no_colon", "expected package.module:function"),
        ("module:", "expected package.module:function"),
    ],
)
def test_resolve_errors_name_the_spec(spec: str, message: str) -> None:
    with pytest.raises(FunctionLoadError) as caught:
        resolve(spec)
    assert f"edge function {spec!r}" in str(caught.value)
    assert message in str(caught.value)
    assert caught.value.problems[0].spec == spec


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory for modules written by the test; sys.path and sys.modules are restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return tmp_path


def test_resolve_from_extra_paths(module_dir: Path) -> None:
    (module_dir / "edgefn_paths_ok.py").write_text("def hook(request):\n    return None\n")
    fn = resolve("edgefn_paths_ok:hook", paths=[module_dir])
    assert fn.__name__ == "hook"
    assert str(module_dir) in sys.path


def test_a_missing_dependency_is_not_a_missing_module(module_dir: Path) -> None:
    (module_dir / "edgefn_needs_dep.py").write_text("import no_such_dependency_xyz\ndef hook(r): pass\n")
    with pytest.raises(FunctionLoadError) as caught:
        resolve("edgefn_needs_dep:hook", paths=[module_dir])
    message = str(caught.value)
    assert "importing module 'edgefn_needs_dep' failed" in message
    assert "no_such_dependency_xyz" in message


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def hook(:\n", "SyntaxError"),
        ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
        ("import sys\nsys.exit(3)\n", "SystemExit"),
    ],
)
def test_a_module_that_fails_to_import(module_dir: Path, source: str, message: str) -> None:
    name = f"edgefn_broken_{abs(hash(source))}"
    (module_dir / f"{name}.py").write_text(source)
    with pytest.raises(FunctionLoadError, match=message):
        resolve(f"{name}:hook", paths=[module_dir])


# --------------------------------------------------------------------------------------------- from_config


def test_no_functions_means_no_function_set() -> None:
    assert FunctionSet.from_config(None) is None
    assert FunctionSet.from_config(FunctionsConfig()) is None


def test_from_config() -> None:
    functions = FunctionSet.from_config(
        FunctionsConfig(viewer_request=f"{HERE}:add_header", viewer_response=f"{HERE}:tag_response"),
        timeout=2.5,
    )
    assert functions is not None
    assert functions.timeout == 2.5
    assert functions.has(Event.VIEWER_REQUEST) and functions.has(Event.VIEWER_RESPONSE)
    assert not functions.has(Event.ORIGIN_REQUEST) and not functions.has(Event.ORIGIN_RESPONSE)
    assert functions.spec(Event.VIEWER_REQUEST) == f"{HERE}:add_header"
    assert functions.spec(Event.ORIGIN_RESPONSE) is None


def test_from_config_reports_every_problem_at_once() -> None:
    config = FunctionsConfig(
        viewer_request=f"{HERE}:missing",
        origin_request=f"{HERE}:two_arguments",  # request events take one argument
        origin_response=f"{HERE}:add_header",  # response events take two
        viewer_response=f"{HERE}:tag_response",  # fine
    )
    with pytest.raises(FunctionLoadError) as caught:
        FunctionSet.from_config(config)
    problems = caught.value.problems
    assert [p.event for p in problems] == [
        Event.VIEWER_REQUEST,
        Event.ORIGIN_REQUEST,
        Event.ORIGIN_RESPONSE,
    ]
    message = str(caught.value)
    assert f"functions.viewer_request: edge function '{HERE}:missing'" in message
    assert "origin_request functions are called as f(request)" in message
    assert "origin_response functions are called as f(request, response)" in message


def test_constructor_checks_arguments_and_timeout() -> None:
    with pytest.raises(FunctionLoadError, match="viewer_response functions are called as"):
        FunctionSet({Event.VIEWER_RESPONSE: add_header})
    with pytest.raises(ValueError, match="timeout"):
        FunctionSet({Event.VIEWER_REQUEST: add_header}, timeout=0)
    with pytest.raises(ValueError):
        FunctionSet({"on_everything": add_header})
    # Default-valued extra parameters and *args are fine.
    FunctionSet({Event.VIEWER_REQUEST: lambda request, extra=None: None})
    FunctionSet({Event.VIEWER_RESPONSE: lambda *args: None})


# --------------------------------------------------------------------------------------------- calling


async def test_async_functions_run_on_the_loop() -> None:
    functions = FunctionSet({Event.VIEWER_REQUEST: add_header})
    request = viewer()
    assert await functions.viewer_request(request) is None
    assert request.headers["X-Added"] == "async"


async def test_sync_functions_run_in_daemon_threads() -> None:
    seen: list[threading.Thread] = []

    def record(request: ViewerRequest) -> None:
        seen.append(threading.current_thread())
        add_header_sync(request)

    functions = FunctionSet({Event.VIEWER_REQUEST: record})
    request = viewer()
    assert await functions.viewer_request(request) is None
    assert seen[0] is not threading.current_thread()
    assert seen[0].daemon
    assert request.headers["X-Added"].startswith("edge-function-")


async def test_async_callable_objects_and_sync_functions_returning_awaitables() -> None:
    class Blocker:
        async def __call__(self, request: ViewerRequest) -> Response:
            return respond(451, "unavailable")

    async def answer() -> Response:
        return respond(418)

    def deferred(request: ViewerRequest) -> Awaitable[Response]:
        return answer()

    blocked = await FunctionSet({Event.VIEWER_REQUEST: Blocker()}).viewer_request(viewer())
    assert blocked is not None and blocked.status == 451
    teapot = await FunctionSet({Event.VIEWER_REQUEST: deferred}).viewer_request(viewer())
    assert teapot is not None and teapot.status == 418


async def test_async_functions_that_wait_get_their_results_and_errors_through() -> None:
    # The first step of an async function runs inline; whatever follows its first await is resumed.
    async def waits_then_answers(request: ViewerRequest) -> Response:
        await asyncio.sleep(0)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, 7)
        value = await future
        request.headers["X-Value"] = str(value)
        return respond(200, str(value))

    async def waits_then_fails(request: ViewerRequest) -> None:
        await asyncio.sleep(0)
        raise LookupError("after a wait")

    async def handles_an_error_it_awaited(request: ViewerRequest) -> None:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_exception, KeyError("k"))
        try:
            await future
        except KeyError:
            request.headers["X-Handled"] = "yes"

    request = viewer()
    answer = await FunctionSet({Event.VIEWER_REQUEST: waits_then_answers}).viewer_request(request)
    assert answer is not None and answer.body == b"7" and request.headers["X-Value"] == "7"
    with pytest.raises(FunctionError, match="LookupError: after a wait"):
        await FunctionSet({Event.VIEWER_REQUEST: waits_then_fails}).viewer_request(viewer())
    await FunctionSet({Event.VIEWER_REQUEST: handles_an_error_it_awaited}).viewer_request(request)
    assert request.headers["X-Handled"] == "yes"


async def test_an_async_function_cleaning_up_after_its_timeout() -> None:
    cleaned: list[bool] = []

    async def slow(request: ViewerRequest) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append(True)

    with pytest.raises(FunctionError) as caught:
        await FunctionSet({Event.VIEWER_REQUEST: slow}, timeout=0.02).viewer_request(viewer())
    assert caught.value.timed_out and cleaned == [True]


async def test_short_circuit_response() -> None:
    functions = FunctionSet({Event.VIEWER_REQUEST: Handlers.block, Event.ORIGIN_REQUEST: Handlers.block})
    for call in (functions.viewer_request, functions.origin_request):
        answer = await call(viewer())
        assert answer is not None and (answer.status, answer.body) == (403, b"no")


async def test_events_without_a_function_do_nothing() -> None:
    functions = FunctionSet({Event.VIEWER_REQUEST: add_header})
    request = viewer()
    assert await functions.origin_request(request) is None
    response = viewer_response()
    await functions.viewer_response(info(), response)
    await functions.origin_response(info(Event.ORIGIN_RESPONSE), origin_response())
    assert "X-Added" not in request.headers and not response.headers


async def test_response_events_change_the_response_in_place() -> None:
    def returns_it(request: RequestInfo, response: Response) -> Response:
        response.status = 203
        return response  # returning the same response is accepted

    functions = FunctionSet({Event.VIEWER_RESPONSE: tag_response, Event.ORIGIN_RESPONSE: returns_it})
    response = viewer_response()
    await functions.viewer_response(info(), response)
    assert response.headers["X-Tagged"] == "/page"
    stored = origin_response()
    await functions.origin_response(info(Event.ORIGIN_RESPONSE), stored)
    assert stored.status == 203


async def test_response_events_check_the_response_they_are_given() -> None:
    functions = FunctionSet({Event.VIEWER_RESPONSE: tag_response})
    with pytest.raises(TypeError, match="viewer_response takes"):
        await functions.viewer_response(info(), Response())  # a generated response has a writable body


# --------------------------------------------------------------------------------------------- time bound


async def test_a_slow_async_function_times_out() -> None:
    async def slow(request: ViewerRequest) -> None:
        await asyncio.sleep(3600)

    functions = FunctionSet({Event.VIEWER_REQUEST: slow}, timeout=0.05)
    with pytest.raises(FunctionError) as caught:
        await functions.viewer_request(viewer())
    error = caught.value
    assert error.timed_out and isinstance(error.cause, TimeoutError)
    assert error.event is Event.VIEWER_REQUEST
    assert "did not return within 0.05 s" in str(error)


async def test_a_slow_sync_function_times_out(released: threading.Event) -> None:
    def slow(request: ViewerRequest) -> None:
        released.wait(60)

    functions = FunctionSet({Event.VIEWER_REQUEST: slow}, timeout=0.05)
    with pytest.raises(FunctionError) as caught:
        await functions.viewer_request(viewer())
    assert caught.value.timed_out


async def test_a_timeout_inside_the_function_is_a_failure_not_the_time_bound() -> None:
    async def own_timeout(request: ViewerRequest) -> None:
        raise TimeoutError("the database did not answer")

    functions = FunctionSet({Event.VIEWER_REQUEST: own_timeout}, timeout=60)
    with pytest.raises(FunctionError) as caught:
        await functions.viewer_request(viewer())
    assert not caught.value.timed_out
    assert "TimeoutError: the database did not answer" in str(caught.value)


async def test_cancelling_the_request_is_not_a_function_error() -> None:
    started = asyncio.Event()

    async def waits(request: ViewerRequest) -> None:
        started.set()
        await asyncio.Event().wait()

    functions = FunctionSet({Event.VIEWER_REQUEST: waits}, timeout=60)
    task = asyncio.create_task(functions.viewer_request(viewer()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert functions.failures == {}


async def test_a_function_raising_cancelled_error_itself_is_a_failure() -> None:
    async def cancels(request: ViewerRequest) -> None:
        raise asyncio.CancelledError

    with pytest.raises(FunctionError):
        await FunctionSet({Event.VIEWER_REQUEST: cancels}).viewer_request(viewer())


# --------------------------------------------------------------------------------------------- failures


def raises_value_error(request: ViewerRequest) -> None:
    raise ValueError("bad input")


async def raises_async(request: ViewerRequest) -> None:
    raise KeyError("missing")


def exits(request: ViewerRequest) -> None:
    sys.exit(1)


async def exits_async(request: ViewerRequest) -> None:
    sys.exit(1)


@pytest.mark.parametrize(
    ("fn", "cause"),
    [
        (raises_value_error, ValueError),
        (raises_async, KeyError),
        (exits, SystemExit),
        (exits_async, SystemExit),
    ],
)
async def test_raising_functions_give_function_error(fn: Any, cause: type[BaseException]) -> None:
    functions = FunctionSet({Event.VIEWER_REQUEST: fn})
    with pytest.raises(FunctionError) as caught:
        await functions.viewer_request(viewer())
    error = caught.value
    assert isinstance(error.cause, cause) and error.__cause__ is error.cause
    assert error.spec == f"{HERE}:{fn.__name__}" and error.event is Event.VIEWER_REQUEST
    assert not error.timed_out
    assert functions.failures == {Event.VIEWER_REQUEST: 1}


async def test_failures_write_a_log_line_naming_the_function(caplog: pytest.LogCaptureFixture) -> None:
    functions = FunctionSet({Event.VIEWER_REQUEST: raises_value_error})
    caplog.set_level(logging.ERROR, logger="edgeproxy.functions")
    for _ in range(3):
        with pytest.raises(FunctionError):
            await functions.viewer_request(viewer())
    records = [r for r in caplog.records if r.name == "edgeproxy.functions"]
    assert len(records) == 3
    message = f"edge function {HERE}:raises_value_error (viewer_request) failed: ValueError: bad input"
    assert all(r.getMessage() == message for r in records)
    # The traceback is logged the first time only.
    assert records[0].exc_info is not None
    assert records[1].exc_info is None and records[2].exc_info is None


async def test_a_timeout_log_line(caplog: pytest.LogCaptureFixture) -> None:
    async def slow(request: ViewerRequest) -> None:
        await asyncio.sleep(3600)

    caplog.set_level(logging.ERROR, logger="edgeproxy.functions")
    with pytest.raises(FunctionError):
        await FunctionSet({Event.VIEWER_REQUEST: slow}, timeout=0.01).viewer_request(viewer())
    assert any("did not return within 0.01 s" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------------- contracts


async def test_request_functions_return_a_response_or_none() -> None:
    async def returns_text(request: ViewerRequest) -> str:
        return "hello"

    with pytest.raises(FunctionError) as caught:
        await FunctionSet({Event.VIEWER_REQUEST: returns_text}).viewer_request(viewer())
    assert isinstance(caught.value.cause, ContractError)
    assert "return a Response (to answer) or None (to go on), not str" in str(caught.value)


async def test_response_functions_return_nothing_else() -> None:
    async def returns_new(request: RequestInfo, response: Response) -> Response:
        return respond(200, "replacement")

    functions = FunctionSet({Event.VIEWER_RESPONSE: returns_new})
    with pytest.raises(FunctionError, match="change the response they are given and return None"):
        await functions.viewer_response(info(), viewer_response())


async def test_forbidden_request_changes_fail_the_call() -> None:
    def changes_method(request: ViewerRequest) -> None:
        request.method = "POST"  # type: ignore[misc]

    with pytest.raises(FunctionError) as caught:
        await FunctionSet({Event.VIEWER_REQUEST: changes_method}).viewer_request(viewer())
    assert isinstance(caught.value.cause, AttributeError)
    assert "method" in str(caught.value)


async def test_the_request_is_read_only_in_response_events() -> None:
    async def changes_request(request: RequestInfo, response: Response) -> None:
        request.headers["X"] = "1"  # type: ignore[index]

    functions = FunctionSet({Event.ORIGIN_RESPONSE: changes_request})
    with pytest.raises(FunctionError) as caught:
        await functions.origin_response(info(Event.ORIGIN_RESPONSE), origin_response())
    assert isinstance(caught.value.cause, TypeError)


async def test_the_body_is_read_only_in_viewer_response() -> None:
    async def changes_body(request: RequestInfo, response: Response) -> None:
        response.body = b"per viewer"

    functions = FunctionSet({Event.VIEWER_RESPONSE: changes_body})
    with pytest.raises(FunctionError, match=r"ReadOnlyError: response\.body is read-only in viewer_response"):
        await functions.viewer_response(info(), viewer_response())


async def test_the_body_is_writable_in_origin_response() -> None:
    async def changes_body(request: RequestInfo, response: Response) -> None:
        response.body = (response.body or b"").upper()

    functions = FunctionSet({Event.ORIGIN_RESPONSE: changes_body})
    response = origin_response(b"stored")
    await functions.origin_response(info(Event.ORIGIN_RESPONSE), response)
    assert response.body == b"STORED" and response.body_replaced


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("X-Bad", "a\r\nInjected: 1", "line break or NUL"),
        ("X-Bad", "a\x00b", "line break or NUL"),
        ("X-Bad", 5, "not text"),
        ("Bad Name", "v", "not a valid field name"),
    ],
)
async def test_invalid_headers_fail_the_call(name: str, value: Any, message: str) -> None:
    async def sets_request_header(request: ViewerRequest) -> None:
        request.headers[name] = value

    async def sets_response_header(request: RequestInfo, response: Response) -> None:
        response.headers[name] = value

    async def answers_with_header(request: ViewerRequest) -> Response:
        return respond(200, headers={name: value})

    with pytest.raises(FunctionError, match=f"request header.*{message}"):
        await FunctionSet({Event.VIEWER_REQUEST: sets_request_header}).viewer_request(viewer())
    with pytest.raises(FunctionError, match=f"response header.*{message}"):
        await FunctionSet({Event.ORIGIN_REQUEST: answers_with_header}).origin_request(viewer())
    with pytest.raises(FunctionError, match=f"response header.*{message}"):
        await FunctionSet({Event.VIEWER_RESPONSE: sets_response_header}).viewer_response(
            info(), viewer_response()
        )


# --------------------------------------------------------------------------------------------- threads


async def test_a_call_cancelled_before_a_thread_took_it_never_runs(released: threading.Event) -> None:
    pool = _DaemonThreads(1)
    ran: list[str] = []
    first = pool.submit(lambda: released.wait(60), ())
    second = pool.submit(ran.append, ("second",))
    assert second.cancel()  # still queued behind the first
    released.set()
    third = pool.submit(ran.append, ("third",))
    await asyncio.wrap_future(third)
    assert first.result() is True
    assert ran == ["third"]


async def test_the_pool_grows_up_to_its_size(released: threading.Event) -> None:
    pool = _DaemonThreads(2)
    started = threading.Semaphore(0)

    def hold() -> str:
        started.release()
        released.wait(60)
        return threading.current_thread().name

    futures = [pool.submit(hold, ()) for _ in range(3)]
    # Two threads take two calls; the third waits for one of them.
    await asyncio.to_thread(started.acquire, True, 60)
    await asyncio.to_thread(started.acquire, True, 60)
    assert not started.acquire(blocking=False)
    released.set()
    names = {await asyncio.wrap_future(f) for f in futures}
    assert names <= {"edge-function-1", "edge-function-2"}


def test_a_forked_child_gets_its_own_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = loader_module._threads()
    assert loader_module._threads() is pool
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as if in a forked child
    assert loader_module._threads() is not pool
