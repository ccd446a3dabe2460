"""Static checks of the deployment files (docker/, nginx/, supervisor/), without Docker.

* docker/entrypoint.sh: ``bash -n``, shellcheck (skipped when missing), its environment validation (readable
  errors, exit status 78), the configs it renders (``entrypoint.sh render``) for several environments;
* the rendered nginx config passes ``nginx -t`` (skipped without nginx) and says what the deployment promises
  (upstream per instance, balancing, WebSocket upgrade on /trpc and /, health/metrics locations, timeouts);
* the rendered supervisord config parses with supervisor's own parser (skipped without supervisor) and has
  the promised process settings;
* the compose files parse (PyYAML) and reference files that exist; the Dockerfile COPYs paths that exist
  and are not excluded from the build context.

The running stack is tested by conformance/test/zz-deploy.test.mjs.
"""

from __future__ import annotations

import fnmatch
import os
import re
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from twisted.trial import unittest

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)

try:  # supervisor is an optional (deploy) dependency
    from supervisor.options import ServerOptions
except ImportError:  # pragma: no cover - depends on the environment
    ServerOptions = None

DISTRIBUTED = {
    "EXECUTION_MODE": "distributed",
    "DATABASE_URL": "postgresql://chaingraph:secret@postgres:5432/chaingraph",
    "KAFKA_BROKERS": "kafka:9092",
    "AUTH_JWT_SECRET": "0123456789abcdef0123456789abcdef",
}


def run_entrypoint(*args: str, env: dict[str, str] | None = None, prefix: str | None = None,
                   stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs docker/entrypoint.sh with a clean environment (nothing from the caller's DATABASE_URL...)."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8", "HOSTNAME": "testhost"}
    if prefix is not None:
        base["PREFIX"] = prefix
    return subprocess.run(["bash", str(ENTRYPOINT), *args], env={**base, **(env or {})}, input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=str(REPO))


class Rendered:
    """The configs rendered by ``entrypoint.sh render`` into a temporary PREFIX."""

    def __init__(self, case: unittest.TestCase, env: dict[str, str]) -> None:
        self.prefix = tempfile.mkdtemp(prefix="cgrender-")
        case.addCleanup(shutil.rmtree, self.prefix, True)
        self.result = run_entrypoint("render", env=env, prefix=self.prefix)
        case.assertEqual(self.result.returncode, 0, self.result.stderr)
        self.stderr = self.result.stderr
        self.nginx_path = Path(self.prefix, "etc/chaingraph/nginx.conf")
        self.supervisor_path = Path(self.prefix, "etc/chaingraph/supervisord.conf")
        self.nginx = self.nginx_path.read_text()
        self.supervisor = self.supervisor_path.read_text()

    def location(self, spec: str) -> str:
        """Body of the nginx ``location <spec> { ... }`` block (no nested blocks in ours)."""
        m = re.search(r"location\s+" + re.escape(spec) + r"\s*\{(.*?)\n\s*\}", self.nginx, re.S)
        assert m, f"no location {spec}"
        return m.group(1)

    def upstream(self) -> str:
        m = re.search(r"upstream chaingraph_gateways\s*\{(.*?)\n\s*\}", self.nginx, re.S)
        assert m
        return m.group(1)


def supervisor_options(path: Path) -> Any:
    opts = ServerOptions()
    opts.realize(args=["-c", str(path)])
    return opts


def programs(opts: Any) -> dict[str, Any]:
    return {p.name: p for g in opts.process_group_configs for p in g.process_configs}


class EntrypointScriptTests(unittest.TestCase):
    def test_bash_syntax(self) -> None:
        r = subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_executable(self) -> None:
        self.assertTrue(os.access(ENTRYPOINT, os.X_OK), "docker/entrypoint.sh must be executable")

    def test_shellcheck(self) -> None:
        if not shutil.which("shellcheck"):
            raise unittest.SkipTest("shellcheck is not installed")
        r = subprocess.run(["shellcheck", str(ENTRYPOINT)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_invalid_environment_is_reported_readably(self) -> None:
        cases = [
            ({"INSTANCES": "0"}, "INSTANCES must be between 1 and 64"),
            ({"INSTANCES": "65"}, "INSTANCES must be between 1 and 64"),
            ({"INSTANCES": "four"}, "INSTANCES must be a whole number"),
            ({"PORT": "http"}, "PORT must be a whole number"),
            ({"PORT": "70000"}, "PORT must be between 1 and 65535"),
            ({"EXECUTION_MODE": "cluster"}, "EXECUTION_MODE must be one of: local distributed"),
            ({"LB_METHOD": "random"}, "LB_METHOD must be one of: ip_hash least_conn hash round_robin"),
            ({"MAX_MEMORY": "lots"}, "MAX_MEMORY must be a size"),
            ({"AUTH_ENABLED": "true", "AUTH_JWT_SECRET": ""}, "AUTH_ENABLED=true needs AUTH_JWT_SECRET"),
            ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of"),
            ({"WORKER_PORT": "4022"}, "overlap gateway ports"),
            ({"NGINX_PORT": "4021"}, "NGINX_PORT=4021 is one of the gateway ports"),
        ]
        for extra, message in cases:
            env = {**DISTRIBUTED, **extra}
            r = run_entrypoint("render", env=env, prefix=tempfile.mkdtemp(prefix="cgbad-"))
            self.assertEqual(r.returncode, 78, f"{extra}: {r.stderr}")
            self.assertIn("entrypoint: error: invalid configuration", r.stderr)
            self.assertIn(message, r.stderr, extra)
        # distributed mode needs both services
        r = run_entrypoint("render", env={"EXECUTION_MODE": "distributed", "AUTH_ENABLED": "false"},
                           prefix=tempfile.mkdtemp(prefix="cgbad-"))
        self.assertEqual(r.returncode, 78)
        self.assertIn("EXECUTION_MODE=distributed needs DATABASE_URL", r.stderr)
        self.assertIn("EXECUTION_MODE=distributed needs KAFKA_BROKERS", r.stderr)

    def test_secrets_are_not_written_or_logged(self) -> None:
        out = Rendered(self, DISTRIBUTED)
        for text in (out.nginx, out.supervisor, out.stderr, out.result.stdout):
            self.assertNotIn("secret@postgres", text)
            self.assertNotIn(DISTRIBUTED["AUTH_JWT_SECRET"], text)

    def test_mode_defaults_to_distributed_when_database_url_is_set(self) -> None:
        out = Rendered(self, {k: v for k, v in DISTRIBUTED.items() if k != "EXECUTION_MODE"})
        self.assertIn("using distributed", out.stderr)
        self.assertIn("--mode distributed", out.supervisor)

    def test_local_mode_forces_one_instance(self) -> None:
        out = Rendered(self, {"AUTH_ENABLED": "false", "INSTANCES": "4", "WORKERS": "2"})
        self.assertIn("using local", out.stderr)
        self.assertIn("INSTANCES=4 forced to 1", out.stderr)
        self.assertIn("WORKERS=2 ignored", out.stderr)
        self.assertIn("[program:gateway-0]", out.supervisor)
        self.assertNotIn("[program:gateway-1]", out.supervisor)
        self.assertNotIn("[program:worker-", out.supervisor)
        self.assertIn("--role all --mode local", out.supervisor)
        self.assertEqual(out.upstream().count("server "), 1)

    def test_fatal_listener_speaks_the_event_protocol(self) -> None:
        payload = "processname:gateway-1 groupname:gateways from_state:BACKOFF"
        header = ("ver:3.0 server:supervisor serial:7 pool:fatal poolserial:7 "
                  f"eventname:PROCESS_STATE_FATAL len:{len(payload)}\n")
        r = run_entrypoint("fatal-listener", env={"EXIT_ON_FATAL": "0"}, stdin=header + payload)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "READY\nRESULT 2\nOKREADY\n")
        self.assertIn("gateway-1", r.stderr)
        # EXIT_ON_FATAL=1: the listener's parent (supervisord; here a shell) gets SIGTERM
        sh = subprocess.run(
            ["bash", "-c", 'bash "$0" fatal-listener >/dev/null 2>&1; echo survived', str(ENTRYPOINT)],
            input=header + payload, capture_output=True, text=True, timeout=30,
            env={"PATH": os.environ["PATH"], "EXIT_ON_FATAL": "1"},
        )
        self.assertEqual(sh.returncode, -15, sh.stdout + sh.stderr)
        self.assertNotIn("survived", sh.stdout)


class NginxConfigTests(unittest.TestCase):
    def nginx_t(self, out: Rendered) -> None:
        if NGINX is None:
            raise unittest.SkipTest("nginx is not installed")
        state = Path(out.prefix, "var/lib/chaingraph/nginx")
        r = subprocess.run([NGINX, "-t", "-e", "stderr", "-p", f"{state}/", "-c", str(out.nginx_path)],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("test is successful", r.stderr)

    def test_nginx_t_accepts_every_variant(self) -> None:
        variants = [
            {},
            {"LB_METHOD": "least_conn"},
            {"LB_METHOD": "hash", "LB_HASH_KEY": "$arg_client"},
            {"LB_METHOD": "round_robin", "INSTANCES": "64", "WORKERS": "0"},
            {"REAL_IP_FROM": "10.0.0.0/8, 192.168.1.10", "METRICS_ALLOW": "10.1.0.0/16"},
            {"LOG_TO_STDOUT": "0", "CHAINGRAPH_KEEPALIVE_ENABLED": "false"},
        ]
        for extra in variants:
            self.nginx_t(Rendered(self, {**DISTRIBUTED, **extra}))

    def test_upstream_has_one_server_per_instance(self) -> None:
        out = Rendered(self, {**DISTRIBUTED, "INSTANCES": "3", "PORT": "5000"})
        servers = re.findall(r"server (\S+) (.*);", out.upstream())
        self.assertEqual([s[0] for s in servers], ["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"])
        for _, params in servers:
            self.assertRegex(params, r"max_fails=\d+ fail_timeout=\d+s")
        self.assertIn("ip_hash;", out.upstream(), "ip_hash is the default")

    def test_lb_method(self) -> None:
        self.assertIn("least_conn;", Rendered(self, {**DISTRIBUTED, "LB_METHOD": "least_conn"}).upstream())
        self.assertIn("hash $binary_remote_addr consistent;",
                      Rendered(self, {**DISTRIBUTED, "LB_METHOD": "hash"}).upstream())
        rr = Rendered(self, {**DISTRIBUTED, "LB_METHOD": "round_robin"}).upstream()
        self.assertNotIn("ip_hash", rr)
        self.assertNotIn("least_conn", rr)

    def test_websocket_upgrade_on_trpc_and_root(self) -> None:
        out = Rendered(self, DISTRIBUTED)
        self.assertRegex(out.nginx, r"map \$http_upgrade \$connection_upgrade \{\s*default upgrade;\s*''\s+close;")
        self.assertIn("proxy_http_version 1.1;", out.nginx)
        for spec in ("/trpc", "/"):
            body = out.location(spec)
            self.assertIn("proxy_pass http://chaingraph_gateways;", body)
            self.assertIn("proxy_set_header Upgrade $http_upgrade;", body)
            self.assertIn("proxy_set_header Connection $connection_upgrade;", body)
            self.assertIn("proxy_buffering off;", body)

    def test_ws_timeouts_exceed_the_keepalive(self) -> None:
        for ping_ms, minimum in (("30000", 30), ("5000", 5), ("120000", 120)):
            out = Rendered(self, {**DISTRIBUTED, "CHAINGRAPH_KEEPALIVE_PING_MS": ping_ms})
            for spec in ("/trpc", "/"):
                m = re.search(r"proxy_read_timeout (\d+)s;", out.location(spec))
                assert m
                timeout = int(m.group(1))
                self.assertGreaterEqual(timeout, 2 * minimum + 10, f"ping {ping_ms} ms: {timeout}s")
                self.assertIn(f"proxy_send_timeout {timeout}s;", out.location(spec))

    def test_health_metrics_and_headers(self) -> None:
        out = Rendered(self, {**DISTRIBUTED, "WORKERS": "2"})
        self.assertIn('return 200 "nginx is healthy\\n";', out.location("= /nginx-health"))
        for spec in ("= /health", "= /ready"):
            self.assertIn("proxy_pass http://chaingraph_gateways;", out.location(spec))
        metrics = out.location("= /metrics")
        allowed = re.findall(r"allow (\S+);", metrics)
        self.assertEqual(allowed[:4], ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])
        self.assertTrue(metrics.strip().splitlines()[len(allowed)].strip() == "deny all;")
        for name in ("gateway-0", "gateway-3", "worker-0", "worker-1"):
            self.assertIn("deny all;", out.location(f"= /metrics/{name}"))
        for header in ("X-Real-IP $remote_addr", "X-Forwarded-For $remote_addr",
                       "X-Forwarded-Proto $chaingraph_forwarded_proto"):
            self.assertIn(f"proxy_set_header {header};", out.nginx)
        self.assertIn("gzip on;", out.nginx)
        self.assertIn("gzip_types text/plain", out.nginx)

    def test_sized_for_many_sockets_and_runs_under_prefix(self) -> None:
        out = Rendered(self, DISTRIBUTED)
        self.assertIn("worker_processes auto;", out.nginx)
        self.assertIn("daemon off;", out.nginx)
        conns = int(re.search(r"worker_connections (\d+);", out.nginx).group(1))  # type: ignore[union-attr]
        rlimit = int(re.search(r"worker_rlimit_nofile (\d+);", out.nginx).group(1))  # type: ignore[union-attr]
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        expected_cap = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
        self.assertEqual(rlimit, expected_cap)
        self.assertEqual(conns, min(16384, expected_cap))
        if expected_cap >= 20000:
            self.assertGreaterEqual(conns, 10000)
        for line in re.findall(r"^\s*(?:pid|\w+_temp_path)\s+(\S+);", out.nginx, re.M):
            self.assertTrue(line.startswith(out.prefix), line)

    def test_real_ip_from(self) -> None:
        plain = Rendered(self, DISTRIBUTED)
        self.assertNotIn("set_real_ip_from", plain.nginx)
        out = Rendered(self, {**DISTRIBUTED, "REAL_IP_FROM": "10.0.0.0/8,172.16.0.1"})
        self.assertIn("set_real_ip_from 10.0.0.0/8;", out.nginx)
        self.assertIn("set_real_ip_from 172.16.0.1;", out.nginx)
        self.assertIn("real_ip_header X-Forwarded-For;", out.nginx)


class SupervisorConfigTests(unittest.TestCase):
    def setUp(self) -> None:
        if ServerOptions is None:
            raise unittest.SkipTest("supervisor is not installed (pip install supervisor superlance)")

    def test_parses_with_the_expected_programs(self) -> None:
        out = Rendered(self, {**DISTRIBUTED, "INSTANCES": "3", "WORKERS": "2", "PORT": "4100",
                              "WORKER_PORT": "4200", "CHAINGRAPH_DRAIN_SECONDS": "7.5"})
        opts = supervisor_options(out.supervisor_path)
        progs = programs(opts)
        self.assertEqual(set(progs), {"nginx", "gateway-0", "gateway-1", "gateway-2", "worker-0", "worker-1",
                                      "memmon", "fatal"})
        groups = {g.name: g for g in opts.process_group_configs}
        self.assertLess(groups["nginx"].priority, groups["workers"].priority)
        self.assertLess(groups["workers"].priority, groups["gateways"].priority,
                        "gateways stop first (reverse priority), nginx last")
        for i in range(3):
            p = progs[f"gateway-{i}"]
            self.assertIn(f"chaingraph-gw --role api --mode distributed --host 127.0.0.1 --port {4100 + i}",
                          p.command)
            self.assertIn("-n --pidfile=", p.command)
        for i in range(2):
            self.assertIn(f"--role worker --mode distributed --host 127.0.0.1 --port {4200 + i}",
                          progs[f"worker-{i}"].command)
        for name in ("gateway-0", "gateway-2", "worker-1"):
            p = progs[name]
            self.assertTrue(p.autorestart)
            self.assertEqual(p.startretries, 10)
            self.assertEqual(p.startsecs, 10)
            self.assertEqual(p.stopsignal, 15)
            self.assertGreater(p.stopwaitsecs, 7.5)
            self.assertIn(0, p.exitcodes)
            self.assertIn(143, p.exitcodes)
            self.assertEqual(p.environment["CHAINGRAPH_INSTANCE_ID"], f"testhost-{name}")
        memmon = progs["memmon"]
        self.assertIn("memmon -g gateways=1GB -g workers=1GB", memmon.command)
        self.assertEqual([e.__name__ for e in groups["memmon"].pool_events], ["Tick60Event"])
        self.assertEqual([e.__name__ for e in groups["fatal"].pool_events], ["ProcessStateFatalEvent"])
        self.assertIn("fatal-listener", progs["fatal"].command)
        self.assertIn("-c " + str(out.nginx_path), progs["nginx"].command)
        self.assertEqual(opts.serverurl, f"unix://{out.prefix}/run/chaingraph/supervisor.sock")
        self.assertEqual(opts.server_configs[0]["file"], f"{out.prefix}/run/chaingraph/supervisor.sock")

    def test_logs_to_stdout_or_rotated_files(self) -> None:
        out = Rendered(self, {**DISTRIBUTED, "LOG_TO_STDOUT": "1", "INSTANCES": "1"})
        for name, p in programs(supervisor_options(out.supervisor_path)).items():
            if name in ("memmon", "fatal"):
                self.assertEqual(p.stderr_logfile, "/dev/stderr")
                self.assertEqual(p.stderr_logfile_maxbytes, 0)
            else:
                self.assertEqual(p.stdout_logfile, "/dev/stdout", name)
                self.assertEqual(p.stdout_logfile_maxbytes, 0, name)
                self.assertTrue(p.redirect_stderr, name)
        out = Rendered(self, {**DISTRIBUTED, "LOG_TO_STDOUT": "0", "INSTANCES": "1"})
        opts = supervisor_options(out.supervisor_path)
        p = programs(opts)["gateway-0"]
        self.assertEqual(p.stdout_logfile, f"{out.prefix}/var/log/chaingraph/gateway-0.log")
        self.assertEqual(p.stdout_logfile_maxbytes, 50 * 1024 * 1024)
        self.assertEqual(p.stdout_logfile_backups, 5)
        self.assertEqual(opts.logfile, f"{out.prefix}/var/log/chaingraph/supervisord.log")

    def test_gateways_only(self) -> None:
        out = Rendered(self, {**DISTRIBUTED, "INSTANCES": "2", "WORKERS": "0"})
        opts = supervisor_options(out.supervisor_path)
        self.assertEqual({g.name for g in opts.process_group_configs}, {"nginx", "gateways", "memmon", "fatal"})
        self.assertIn("memmon -g gateways=1GB -n", programs(opts)["memmon"].command)
        self.assertNotIn("/metrics/worker-", out.nginx)

    def test_max_memory_formats(self) -> None:
        for given, memmon in (("512M", "512MB"), ("2g", "2GB"), ("1GB", "1GB"), ("1048576", "1048576"),
                              ("800 MB", "800MB")):
            out = Rendered(self, {**DISTRIBUTED, "MAX_MEMORY": given})
            self.assertIn(f"-g gateways={memmon} -g workers={memmon}", out.supervisor, given)
            supervisor_options(out.supervisor_path)


def _load_yaml(path: Path) -> dict[str, Any]:
    with path.open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), path
    return data


def _dockerignore_patterns() -> list[str]:
    path = DOCKER / "Dockerfile.dockerignore"
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    rel = rel.rstrip("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel, pat.replace("**/", "")):
            return True
        if rel.startswith(pat + "/"):
            return True
    return False


class DockerFilesTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dockerfile = (DOCKER / "Dockerfile").read_text()
        self.instructions = [
            ln.strip() for ln in re.sub(r"\\\n", " ", self.dockerfile).splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")
        ]

    def test_dockerfile_copies_existing_paths(self) -> None:
        patterns = _dockerignore_patterns()
        copies = [i for i in self.instructions if i.startswith("COPY ") and "--from=" not in i]
        self.assertGreater(len(copies), 3)
        for instr in copies:
            parts = [p for p in instr.split()[1:] if not p.startswith("--")]
            for src in parts[:-1]:
                self.assertTrue((REPO / src).exists(), f"{instr}: {src} does not exist")
                self.assertFalse(_ignored(src, patterns), f"{instr}: {src} is excluded by the .dockerignore")
        for froms in (i for i in self.instructions if i.startswith("COPY --from=")):
            self.assertRegex(froms, r"--from=build ")

    def test_dockerfile_shape(self) -> None:
        froms = [i for i in self.instructions if i.startswith("FROM ")]
        self.assertGreaterEqual(len(froms), 2, "multi-stage")
        self.assertIn("ARG PYTHON_IMAGE=python:3.11-slim", self.instructions)
        self.assertTrue(all("${PYTHON_IMAGE}" in f for f in froms))
        self.assertIn("EXPOSE 80", self.instructions)
        users = [i.split()[1] for i in self.instructions if i.startswith("USER ")]
        self.assertEqual(users, ["app"], "runs as the non-root app user")
        health = next(i for i in self.instructions if i.startswith("HEALTHCHECK "))
        self.assertIn("/health", health)
        self.assertIn('ENTRYPOINT ["/app/docker/entrypoint.sh"]', self.instructions)
        self.assertRegex(self.dockerfile, r"apt-get install[^\n]*nginx")
        self.assertRegex(self.dockerfile, r'"supervisor[^"]*" "superlance[^"]*"')

    def test_compose_files(self) -> None:
        path = DOCKER / "docker-compose.yml"
        compose = _load_yaml(path)
        services = compose["services"]
        self.assertEqual(set(services), {"gateway", "postgres", "kafka"})
        self.assertTrue(services["postgres"]["image"].startswith("postgres:"))
        self.assertTrue(services["kafka"]["image"].startswith("apache/kafka:"))
        kenv = services["kafka"]["environment"]
        self.assertIn("controller", kenv["KAFKA_PROCESS_ROLES"], "KRaft mode")
        self.assertNotIn("KAFKA_ZOOKEEPER_CONNECT", kenv)
        for name in ("postgres", "kafka", "gateway"):
            self.assertIn("healthcheck", services[name], name)
        gw = services["gateway"]
        context = (path.parent / gw["build"]["context"]).resolve()
        self.assertEqual(context, REPO)
        self.assertTrue((context / gw["build"]["dockerfile"]).is_file())
        self.assertEqual(gw["depends_on"], {"postgres": {"condition": "service_healthy"},
                                            "kafka": {"condition": "service_healthy"}})
        for key in ("INSTANCES", "WORKERS", "PORT", "DATABASE_URL", "KAFKA_BROKERS", "LOG_LEVEL",
                    "EXECUTION_MODE", "AUTH_ENABLED", "AUTH_JWT_SECRET", "MAX_MEMORY", "LB_METHOD"):
            self.assertIn(key, gw["environment"], key)
        self.assertIn("80", " ".join(gw["ports"]))
        grace = int(str(gw["stop_grace_period"]).rstrip("s"))
        drain = int(re.search(r":-(\d+)\}", gw["environment"]["CHAINGRAPH_DRAIN_SECONDS"]).group(1))  # type: ignore[union-attr]
        # gateways, then workers, each within stopwaitsecs (drain + 10), then nginx (15)
        self.assertGreaterEqual(grace, 2 * (drain + 10) + 15, "stop_grace_period covers supervisord's stop")
        for net in (compose.get("networks") or {}).values():
            self.assertFalse((net or {}).get("external"), "no external network")
        for svc in services.values():
            for env_file in svc.get("env_file", []) or []:
                rel = env_file["path"] if isinstance(env_file, dict) else env_file
                required = env_file.get("required", True) if isinstance(env_file, dict) else True
                if required:
                    self.assertTrue((path.parent / rel).is_file(), rel)

    def test_prod_overrides(self) -> None:
        base = _load_yaml(DOCKER / "docker-compose.yml")
        prod = _load_yaml(DOCKER / "docker-compose.prod.yml")
        self.assertLessEqual(set(prod["services"]), set(base["services"]))
        for name, svc in prod["services"].items():
            self.assertEqual(svc.get("restart"), "always", name)
            self.assertIn("memory", svc["deploy"]["resources"]["limits"], name)
            self.assertIn("cpus", svc["deploy"]["resources"]["limits"], name)
        self.assertEqual(prod["services"]["gateway"]["environment"]["LOG_LEVEL"], "warn")

    def test_docker_compose_config_if_available(self) -> None:
        docker = shutil.which("docker")
        if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
            raise unittest.SkipTest("docker compose is not available")
        r = subprocess.run(
            [docker, "compose", "-f", str(DOCKER / "docker-compose.yml"), "-f",
             str(DOCKER / "docker-compose.prod.yml"), "config", "-q"],
            capture_output=True, text=True, env={**os.environ, "AUTH_JWT_SECRET": "x" * 32},
        )
        self.assertEqual(r.returncode, 0, r.stderr)
