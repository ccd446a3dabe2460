"""Tests for chaingraph_gw.config."""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from chaingraph_gw.config import (
    ConfigError,
    KeepAliveSettings,
    LimitSettings,
    Settings,
    load_settings,
    redact_url,
    settings_schema,
)


class _Base(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(textwrap.dedent(text))
        return path

    def error(self, **kwargs) -> str:
        kwargs.setdefault("env", {})
        exc = self.assertRaises(ConfigError, load_settings, **kwargs)
        return str(exc)


class DefaultsTests(_Base):
    def test_defaults(self):
        s = load_settings(env={})
        self.assertEqual(s, Settings())
        self.assertEqual(s.host, "127.0.0.1")
        self.assertEqual(s.port, 4021)
        self.assertEqual(s.role, "all")
        self.assertEqual(s.mode, "local")
        self.assertEqual(s.log_level, "info")
        self.assertEqual(s.log_format, "text")
        self.assertIsNone(s.database_url)
        self.assertIsNone(s.kafka_brokers)
        self.assertEqual(s.kafka_topics_prefix, "")
        self.assertEqual(s.data_dir, "./var")
        self.assertEqual(s.environment, "development")
        self.assertEqual(s.transformer, "superjson")
        self.assertEqual(s.drain_seconds, 10.0)
        self.assertIs(s.trust_forwarded, True)
        self.assertIsNone(s.instance_id)
        self.assertEqual(s.keepalive, KeepAliveSettings(enabled=True, ping_ms=30000, pong_wait_ms=10000))
        self.assertEqual(
            s.limits,
            LimitSettings(
                max_frame_bytes=1048576,
                max_batch=100,
                max_subscriptions=1000,
                max_outbound_bytes=16777216,
                max_connections=0,
            ),
        )
        self.assertIs(s.auth_enabled, True)
        self.assertIsNone(s.auth_jwt_secret)

    def test_frozen(self):
        s = load_settings(env={})
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, s, "port", 1)
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, s.keepalive, "ping_ms", 1)
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, s.limits, "max_batch", 1)

    def test_default_env_is_os_environ(self):
        old = os.environ.get("CHAINGRAPH_MAX_BATCH")
        os.environ["CHAINGRAPH_MAX_BATCH"] = "7"
        try:
            self.assertEqual(load_settings().limits.max_batch, 7)
        finally:
            if old is None:
                del os.environ["CHAINGRAPH_MAX_BATCH"]
            else:
                os.environ["CHAINGRAPH_MAX_BATCH"] = old


class PrecedenceTests(_Base):
    FILE = """\
        host: 0.0.0.0
        port: 5000
        log_level: debug
        drain_seconds: 2.5
        keepalive:
          ping_ms: 1000
          pong_wait_ms: 500
        limits:
          max_batch: 10
          max_connections: 50
        """

    def test_file_over_defaults(self):
        s = load_settings(config_file=self.write(self.FILE), env={})
        self.assertEqual(s.host, "0.0.0.0")
        self.assertEqual(s.port, 5000)
        self.assertEqual(s.log_level, "debug")
        self.assertEqual(s.drain_seconds, 2.5)
        self.assertEqual(s.keepalive, KeepAliveSettings(enabled=True, ping_ms=1000, pong_wait_ms=500))
        self.assertEqual(s.limits.max_batch, 10)
        self.assertEqual(s.limits.max_connections, 50)
        self.assertEqual(s.limits.max_subscriptions, 1000)  # untouched default

    def test_env_over_file(self):
        env = {"PORT": "6000", "CHAINGRAPH_KEEPALIVE_PING_MS": "2000", "CHAINGRAPH_MAX_BATCH": "20"}
        s = load_settings(config_file=self.write(self.FILE), env=env)
        self.assertEqual(s.port, 6000)
        self.assertEqual(s.host, "0.0.0.0")  # from file
        self.assertEqual(s.keepalive.ping_ms, 2000)
        self.assertEqual(s.keepalive.pong_wait_ms, 500)  # from file
        self.assertEqual(s.limits.max_batch, 20)
        self.assertEqual(s.limits.max_connections, 50)  # from file

    def test_overrides_over_env(self):
        env = {"PORT": "6000", "CHAINGRAPH_KEEPALIVE_PING_MS": "2000", "LOG_LEVEL": "error"}
        s = load_settings(
            config_file=self.write(self.FILE),
            env=env,
            overrides={"port": 7000, "keepalive.ping_ms": "3000", "limits.max_batch": 30},
        )
        self.assertEqual(s.port, 7000)
        self.assertEqual(s.keepalive.ping_ms, 3000)
        self.assertEqual(s.limits.max_batch, 30)
        self.assertEqual(s.log_level, "error")  # env
        self.assertEqual(s.drain_seconds, 2.5)  # file

    def test_overrides_none_means_not_given(self):
        s = load_settings(env={"PORT": "6000"}, overrides={"port": None, "host": None})
        self.assertEqual(s.port, 6000)
        self.assertEqual(s.host, "127.0.0.1")

    def test_overrides_nested_mapping_and_dashes(self):
        s = load_settings(env={}, overrides={"keepalive": {"pong-wait-ms": 250}, "drain-seconds": "1.5"})
        self.assertEqual(s.keepalive.pong_wait_ms, 250)
        self.assertEqual(s.drain_seconds, 1.5)

    def test_overrides_typed_values(self):
        s = load_settings(
            env={},
            overrides={"drain_seconds": 3, "trust_forwarded": False, "auth_enabled": "off", "role": "API"},
        )
        self.assertEqual(s.drain_seconds, 3.0)
        self.assertIsInstance(s.drain_seconds, float)
        self.assertIs(s.trust_forwarded, False)
        self.assertIs(s.auth_enabled, False)
        self.assertEqual(s.role, "api")

    def test_config_file_from_env(self):
        path = self.write("port: 5001\n")
        s = load_settings(env={"CHAINGRAPH_CONFIG": path})
        self.assertEqual(s.port, 5001)

    def test_explicit_config_file_wins_over_env_var(self):
        s = load_settings(
            config_file=self.write("port: 5002\n"), env={"CHAINGRAPH_CONFIG": self.write("port: 5003\n")}
        )
        self.assertEqual(s.port, 5002)

    def test_empty_env_values_are_unset(self):
        path = self.write("port: 5004\nhost: example\n")
        names = ("PORT", "HOST", "CHAINGRAPH_TRUST_FORWARDED", "NODE_ENV", "CHAINGRAPH_CONFIG")
        env = dict.fromkeys(names, "")
        s = load_settings(config_file=path, env=env)
        self.assertEqual(s.port, 5004)
        self.assertEqual(s.host, "example")
        self.assertIs(s.trust_forwarded, True)
        self.assertEqual(s.environment, "development")
        self.assertEqual(load_settings(env={"CHAINGRAPH_CONFIG": ""}), Settings())

    def test_every_env_var(self):
        env = {
            "HOST": "::",
            "PORT": "8080",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "DATABASE_URL": "postgres://u:p@db/x",
            "KAFKA_BROKERS": "k1:9092,k2:9092",
            "KAFKA_TOPICS_PREFIX": "cg.",
            "EXECUTION_MODE": "distributed",
            "CHAINGRAPH_ROLE": "worker",
            "CHAINGRAPH_DATA_DIR": "/data",
            "NODE_ENV": "production",
            "CHAINGRAPH_TRANSFORMER": "none",
            "CHAINGRAPH_DRAIN_SECONDS": "0",
            "CHAINGRAPH_TRUST_FORWARDED": "no",
            "CHAINGRAPH_INSTANCE_ID": "gw-1",
            "CHAINGRAPH_KEEPALIVE_ENABLED": "off",
            "CHAINGRAPH_KEEPALIVE_PING_MS": "100",
            "CHAINGRAPH_KEEPALIVE_PONG_WAIT_MS": "200",
            "CHAINGRAPH_MAX_FRAME_BYTES": "1",
            "CHAINGRAPH_MAX_BATCH": "2",
            "CHAINGRAPH_MAX_SUBSCRIPTIONS": "3",
            "CHAINGRAPH_MAX_OUTBOUND_BYTES": "4",
            "CHAINGRAPH_MAX_CONNECTIONS": "5",
            "AUTH_ENABLED": "0",
            "AUTH_JWT_SECRET": "s3cret",
        }
        s = load_settings(env=env)
        self.assertEqual(
            s,
            Settings(
                host="::",
                port=8080,
                role="worker",
                mode="distributed",
                log_level="warn",
                log_format="json",
                database_url="postgres://u:p@db/x",
                kafka_brokers="k1:9092,k2:9092",
                kafka_topics_prefix="cg.",
                data_dir="/data",
                environment="production",
                transformer="none",
                drain_seconds=0.0,
                trust_forwarded=False,
                instance_id="gw-1",
                keepalive=KeepAliveSettings(enabled=False, ping_ms=100, pong_wait_ms=200),
                limits=LimitSettings(
                    max_frame_bytes=1,
                    max_batch=2,
                    max_subscriptions=3,
                    max_outbound_bytes=4,
                    max_connections=5,
                ),
                auth_enabled=False,
                auth_jwt_secret="s3cret",
            ),
        )

    def test_every_file_key(self):
        path = self.write(
            """\
            host: h
            port: 1
            role: api
            mode: distributed
            log_level: warning
            log_format: json
            database_url: postgres://db/x
            kafka_brokers: k:9092
            kafka_topics_prefix: p.
            data_dir: /d
            environment: production
            transformer: none
            drain_seconds: 0
            trust_forwarded: false
            instance_id: i-1
            keepalive: {enabled: false, ping_ms: 100, pong_wait_ms: 100}
            limits: {max_frame_bytes: 1, max_batch: 1, max_subscriptions: 1, max_outbound_bytes: 1,
                     max_connections: 0}
            auth_enabled: false
            auth_jwt_secret: "123"
            """
        )
        s = load_settings(config_file=path, env={})
        self.assertEqual(s.log_level, "warn")
        self.assertEqual(s.environment, "production")
        self.assertEqual(s.drain_seconds, 0.0)
        self.assertIsInstance(s.drain_seconds, float)
        self.assertIs(s.keepalive.enabled, False)
        self.assertEqual(s.auth_jwt_secret, "123")
        self.assertEqual(s.port, 1)

    def test_file_null_optional_and_empty_sections(self):
        path = self.write("database_url: null\nkeepalive:\nlimits: {}\n")
        s = load_settings(config_file=path, env={"DATABASE_URL": ""})
        self.assertIsNone(s.database_url)
        self.assertEqual(s.keepalive, KeepAliveSettings())

    def test_empty_file(self):
        self.assertEqual(load_settings(config_file=self.write(""), env={}), Settings())
        self.assertEqual(load_settings(config_file=self.write("# nothing\n"), env={}), Settings())


class BoolAndEnumTests(_Base):
    def test_bool_words(self):
        for word, expected in [
            ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("Yes", True), ("on", True),
            ("ON", True), (" true ", True),
            ("false", False), ("False", False), ("0", False), ("no", False), ("NO", False), ("off", False),
        ]:  # fmt: skip
            s = load_settings(env={"CHAINGRAPH_TRUST_FORWARDED": word, "AUTH_ENABLED": word})
            self.assertIs(s.trust_forwarded, expected, word)
            self.assertIs(s.auth_enabled, expected, word)

    def test_bad_bool_env(self):
        for var in ("CHAINGRAPH_TRUST_FORWARDED", "CHAINGRAPH_KEEPALIVE_ENABLED", "AUTH_ENABLED"):
            for word in ("maybe", "2", "tru", "y"):
                msg = self.error(env={var: word})
                self.assertIn(f"environment {var}:", msg)
                self.assertIn(f'"{word}"', msg)
                self.assertIn("boolean", msg)

    def test_bad_bool_override(self):
        msg = self.error(overrides={"keepalive.enabled": "nah"})
        self.assertIn('command line "keepalive.enabled"', msg)
        msg = self.error(overrides={"auth_enabled": 1})
        self.assertIn('command line "auth_enabled"', msg)

    def test_node_env(self):
        for value, expected in [
            ("production", "production"),
            ("Production", "production"),
            ("development", "development"),
            ("test", "development"),
            ("staging", "development"),
            ("", "development"),
        ]:
            self.assertEqual(load_settings(env={"NODE_ENV": value}).environment, expected, value)
        s = load_settings(env={"NODE_ENV": "production"})
        self.assertTrue(s.is_production)
        self.assertFalse(load_settings(env={}).is_production)

    def test_node_env_overrides_file(self):
        path = self.write("environment: production\n")
        self.assertEqual(load_settings(config_file=path, env={"NODE_ENV": "test"}).environment, "development")

    def test_environment_strict_in_file_and_overrides(self):
        msg = self.error(config_file=self.write("environment: staging\n"))
        self.assertIn('key "environment"', msg)
        self.assertIn("development, production", msg)
        msg = self.error(overrides={"environment": "staging"})
        self.assertIn('command line "environment"', msg)

    def test_log_level_warning_alias(self):
        self.assertEqual(load_settings(env={"LOG_LEVEL": "warning"}).log_level, "warn")
        self.assertEqual(load_settings(env={"LOG_LEVEL": "WARN"}).log_level, "warn")
        self.assertEqual(load_settings(env={}, overrides={"log_level": "warning"}).log_level, "warn")

    def test_bad_enums_env(self):
        cases = {
            "LOG_LEVEL": "verbose",
            "LOG_FORMAT": "xml",
            "EXECUTION_MODE": "cluster",
            "CHAINGRAPH_ROLE": "both",
            "CHAINGRAPH_TRANSFORMER": "json",
        }
        for var, value in cases.items():
            msg = self.error(env={var: value})
            self.assertTrue(msg.startswith(f"environment {var}: expected one of "), msg)
            self.assertIn(f'got "{value}"', msg)

    def test_bad_enum_file(self):
        msg = self.error(config_file=self.write("role: both\n"))
        self.assertIn('key "role": expected one of api, worker, all, got "both"', msg)
        msg = self.error(config_file=self.write("log_format: 1\n"))
        self.assertIn('key "log_format"', msg)


class ErrorTests(_Base):
    def test_env_port_not_integer(self):
        self.assertEqual(
            self.error(env={"PORT": "abc"}), 'environment PORT: expected an integer 1..65535, got "abc"'
        )

    def test_env_port_range(self):
        for value in ("0", "65536", "-1"):
            msg = self.error(env={"PORT": value})
            self.assertEqual(msg, f'environment PORT: expected an integer 1..65535, got "{value}"')

    def test_env_int_errors(self):
        cases = {
            "CHAINGRAPH_KEEPALIVE_PING_MS": ("99", ">= 100"),
            "CHAINGRAPH_KEEPALIVE_PONG_WAIT_MS": ("1.5", ">= 100"),
            "CHAINGRAPH_MAX_FRAME_BYTES": ("0", ">= 1"),
            "CHAINGRAPH_MAX_BATCH": ("many", ">= 1"),
            "CHAINGRAPH_MAX_SUBSCRIPTIONS": ("0", ">= 1"),
            "CHAINGRAPH_MAX_OUTBOUND_BYTES": ("-5", ">= 1"),
            "CHAINGRAPH_MAX_CONNECTIONS": ("-1", ">= 0"),
        }
        for var, (value, bound) in cases.items():
            msg = self.error(env={var: value})
            self.assertEqual(msg, f'environment {var}: expected an integer {bound}, got "{value}"')

    def test_env_huge_integer(self):
        msg = self.error(env={"CHAINGRAPH_MAX_BATCH": "9" * 5000})
        self.assertIn("environment CHAINGRAPH_MAX_BATCH: expected an integer", msg)
        self.assertLess(len(msg), 200)

    def test_env_drain_seconds(self):
        self.assertEqual(load_settings(env={"CHAINGRAPH_DRAIN_SECONDS": "0.25"}).drain_seconds, 0.25)
        for value in ("-1", "soon", "nan", "inf"):
            msg = self.error(env={"CHAINGRAPH_DRAIN_SECONDS": value})
            prefix = "environment CHAINGRAPH_DRAIN_SECONDS: expected a number >= 0"
            self.assertTrue(msg.startswith(prefix), msg)

    def test_env_zero_limits_allowed_where_documented(self):
        self.assertEqual(load_settings(env={"CHAINGRAPH_MAX_CONNECTIONS": "0"}).limits.max_connections, 0)
        self.assertEqual(load_settings(env={"CHAINGRAPH_DRAIN_SECONDS": "0"}).drain_seconds, 0.0)

    def test_port_zero_only_from_overrides(self):
        self.assertEqual(load_settings(env={}, overrides={"port": 0}).port, 0)
        self.assertEqual(load_settings(env={}, overrides={"port": "0"}).port, 0)
        msg = self.error(config_file=self.write("port: 0\n"))
        self.assertIn('key "port": expected an integer 1..65535, got 0', msg)
        self.assertIn("environment PORT", self.error(env={"PORT": "0"}))
        msg = self.error(overrides={"port": 70000})
        self.assertEqual(msg, 'command line "port": expected an integer 0..65535, got 70000')

    def test_file_unknown_key_with_suggestion(self):
        path = self.write("keepalive:\n  pingms: 5\n")
        self.assertEqual(
            self.error(config_file=path),
            f'config file {path}: unknown key "keepalive.pingms" (did you mean "keepalive.ping_ms"?)',
        )

    def test_file_unknown_top_level_key(self):
        path = self.write("prot: 80\n")
        self.assertEqual(
            self.error(config_file=path), f'config file {path}: unknown key "prot" (did you mean "port"?)'
        )
        path = self.write("keep_alive: {}\n")
        self.assertIn('unknown key "keep_alive" (did you mean "keepalive"?)', self.error(config_file=path))
        path = self.write("ping_ms: 500\n")
        msg = self.error(config_file=path)
        self.assertIn('unknown key "ping_ms" (did you mean "keepalive.ping_ms"?)', msg)
        path = self.write("completely_unrelated: 1\n")
        msg = self.error(config_file=path)
        self.assertEqual(msg, f'config file {path}: unknown key "completely_unrelated"')

    def test_file_dotted_key(self):
        path = self.write("keepalive.ping_ms: 500\n")
        msg = self.error(config_file=path)
        self.assertIn(f'config file {path}: unknown key "keepalive.ping_ms"', msg)
        self.assertIn("nested mapping", msg)

    def test_file_non_string_key(self):
        path = self.write("1: x\n")
        self.assertIn(f'config file {path}: unknown key "1"', self.error(config_file=path))

    def test_file_from_env_var_is_named(self):
        path = self.write("bogus: 1\n")
        msg = self.error(env={"CHAINGRAPH_CONFIG": path})
        self.assertTrue(msg.startswith(f"config file {path} (from CHAINGRAPH_CONFIG): "), msg)

    def test_file_wrong_types(self):
        cases = [
            ('port: "80"\n', "port", 'expected an integer 1..65535, got "80"'),
            ("port: 80.0\n", "port", "expected an integer 1..65535, got 80.0"),
            ("port: true\n", "port", "expected an integer 1..65535, got true"),
            ("port: 70000\n", "port", "expected an integer 1..65535, got 70000"),
            ("port:\n", "port", "expected an integer 1..65535, got null"),
            ("keepalive:\n  ping_ms: 99\n", "keepalive.ping_ms", "expected an integer >= 100, got 99"),
            ("keepalive:\n  pong_wait_ms: 50\n", "keepalive.pong_wait_ms", "expected an integer >= 100"),
            ("keepalive:\n  enabled: 1\n", "keepalive.enabled", "expected a boolean"),
            ("keepalive:\n  enabled: 'yes'\n", "keepalive.enabled", "expected a boolean"),
            ("limits:\n  max_batch: 0\n", "limits.max_batch", "expected an integer >= 1, got 0"),
            ("limits:\n  max_frame_bytes: false\n", "limits.max_frame_bytes", "expected an integer >= 1"),
            ("limits:\n  max_connections: -1\n", "limits.max_connections", "integer >= 0, got -1"),
            ("limits:\n  max_subscriptions: [1]\n", "limits.max_subscriptions", "got a list"),
            ("limits:\n  max_outbound_bytes: 1.0e6\n", "limits.max_outbound_bytes", "integer >= 1"),
            ("drain_seconds: -0.5\n", "drain_seconds", "expected a number >= 0, got -0.5"),
            ("drain_seconds: yes\n", "drain_seconds", "expected a number >= 0, got true"),
            ("drain_seconds: '5'\n", "drain_seconds", "expected a number >= 0"),
            ("drain_seconds: .inf\n", "drain_seconds", "expected a number >= 0"),
            ("trust_forwarded: 'true'\n", "trust_forwarded", "expected a boolean"),
            ("host: 12\n", "host", "expected a non-empty string, got 12"),
            ("host: ''\n", "host", 'expected a non-empty string, got ""'),
            ("data_dir: null\n", "data_dir", "got null"),
            ("auth_jwt_secret: 12345\n", "auth_jwt_secret", "expected a string, got 12345"),
            ("database_url: {a: 1}\n", "database_url", "got a dict"),
        ]
        for text, key, problem in cases:
            path = self.write(text)
            msg = self.error(config_file=path)
            self.assertTrue(msg.startswith(f'config file {path}: key "{key}": '), msg)
            self.assertIn(problem, msg)

    def test_file_section_not_a_mapping(self):
        path = self.write("limits: 5\n")
        msg = self.error(config_file=path)
        self.assertEqual(msg, f'config file {path}: key "limits": expected a mapping, got 5')

    def test_file_missing(self):
        path = self.mktemp()
        msg = self.error(config_file=path)
        self.assertTrue(msg.startswith(f"config file {path}: cannot read file"), msg)
        msg = self.error(env={"CHAINGRAPH_CONFIG": path})
        self.assertIn(path, msg)

    def test_file_is_directory(self):
        path = self.mktemp()
        os.mkdir(path)
        self.assertTrue(self.error(config_file=path).startswith(f"config file {path}: cannot read file"))

    def test_file_unreadable(self):
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            raise self.skipTest("root can read any file")
        path = self.write("port: 1\n")
        os.chmod(path, 0)
        self.addCleanup(os.chmod, path, 0o600)
        self.assertTrue(self.error(config_file=path).startswith(f"config file {path}: cannot read file"))

    def test_file_path_through_a_file(self):
        path = os.path.join(self.write("x: 1\n"), "config.yaml")  # ENOTDIR, readable by root too
        self.assertTrue(self.error(config_file=path).startswith(f"config file {path}: cannot read file"))

    def test_file_not_utf8(self):
        path = self.mktemp()
        with open(path, "wb") as fh:
            fh.write(b"host: \xff\xfe\n")
        self.assertTrue(self.error(config_file=path).startswith(f"config file {path}: cannot read file"))

    def test_file_not_a_mapping(self):
        for text, shown in [("- a\n- b\n", "a list"), ("just text\n", '"just text"'), ("42\n", "42")]:
            path = self.write(text)
            msg = self.error(config_file=path)
            self.assertEqual(msg, f"config file {path}: expected a mapping at the top level, got {shown}")

    def test_file_invalid_yaml(self):
        path = self.write("port: [1, 2\nhost: x\n")
        msg = self.error(config_file=path)
        self.assertTrue(msg.startswith(f"config file {path}: invalid YAML: "), msg)
        self.assertIn("line", msg)
        self.assertNotIn("\n", msg)

    def test_override_errors(self):
        msg = self.error(overrides={"keepalive.pingms": 5})
        self.assertEqual(
            msg, 'command line: unknown option "keepalive.pingms" (did you mean "keepalive.ping_ms"?)'
        )
        msg = self.error(overrides={"limits.max_batch": "lots"})
        self.assertEqual(msg, 'command line "limits.max_batch": expected an integer >= 1, got "lots"')
        msg = self.error(overrides={"limits.max_batch": True})
        self.assertEqual(msg, 'command line "limits.max_batch": expected an integer >= 1, got true')
        msg = self.error(overrides={"port": 80.0})
        self.assertIn('command line "port"', msg)
        msg = self.error(overrides={"drain_seconds": "x"})
        self.assertIn('command line "drain_seconds": expected a number >= 0', msg)
        msg = self.error(overrides={"host": ""})
        self.assertIn('command line "host": expected a non-empty string', msg)
        msg = self.error(overrides={"keepalive": 5})
        self.assertIn('command line "keepalive"', msg)

    def test_error_attributes(self):
        exc = self.assertRaises(ConfigError, load_settings, env={"PORT": "x"})
        self.assertEqual(exc.source, "environment")
        self.assertEqual(exc.key, "port")
        path = self.write("keepalive:\n  pingms: 1\n")
        exc = self.assertRaises(ConfigError, load_settings, config_file=path, env={})
        self.assertEqual(exc.key, "keepalive.pingms")
        self.assertIn(path, exc.source)

    def test_error_does_not_chain_internal_exceptions(self):
        exc = self.assertRaises(ConfigError, load_settings, env={"PORT": "x"})
        self.assertIsNone(exc.__cause__)
        self.assertTrue(exc.__suppress_context__)


class PublicDictTests(_Base):
    def test_redacts_secrets(self):
        s = load_settings(
            env={
                "AUTH_JWT_SECRET": "topsecret",
                "DATABASE_URL": "postgresql://chain:hunter2@db.internal:5432/chaingraph?sslmode=require",
            }
        )
        data = s.public_dict()
        text = json.dumps(data)  # JSON-able
        self.assertNotIn("topsecret", text)
        self.assertNotIn("hunter2", text)
        self.assertEqual(data["auth_jwt_secret"], "***")
        self.assertEqual(
            data["database_url"], "postgresql://chain:***@db.internal:5432/chaingraph?sslmode=require"
        )
        self.assertEqual(data["keepalive"], {"enabled": True, "ping_ms": 30000, "pong_wait_ms": 10000})
        self.assertEqual(data["limits"]["max_frame_bytes"], 1048576)
        self.assertEqual(data["port"], 4021)
        # The settings themselves keep the real values.
        self.assertEqual(s.auth_jwt_secret, "topsecret")

    def test_unset_secrets_stay_none(self):
        data = Settings().public_dict()
        self.assertIsNone(data["auth_jwt_secret"])
        self.assertIsNone(data["database_url"])

    def test_url_without_password_unchanged(self):
        for url in ("postgres://db/x", "postgres://user@db:5432/x", "postgres://db:5432/x?a=b@c"):
            self.assertEqual(redact_url(url), url)

    def test_redact_url_forms(self):
        cases = {
            "postgres://u:p%40ss@h/db": "postgres://u:***@h/db",
            "postgres://u:p@ss@h/db": "postgres://u:***@h/db",
            "postgres://u:pa/ss@h/db": "postgres://u:***@h/db",
            "postgresql://u:pw@[::1]:5432/db": "postgresql://u:***@[::1]:5432/db",
            "postgres://:pw@h/db": "postgres://:***@h/db",
            "postgres://h/db?user=u&password=pw&x=1": "postgres://h/db?user=u&password=***&x=1",
            "host=h user=u password=pw dbname=d": "host=h user=u password=*** dbname=d",
            "host=h password='p w' dbname=d": "host=h password=*** dbname=d",
        }
        for url, expected in cases.items():
            self.assertEqual(redact_url(url), expected, url)


class SchemaTests(SynchronousTestCase):
    def all_fields(self) -> list[str]:
        keys = []
        for f in dataclasses.fields(Settings):
            if f.name == "keepalive":
                keys += [f"keepalive.{g.name}" for g in dataclasses.fields(KeepAliveSettings)]
            elif f.name == "limits":
                keys += [f"limits.{g.name}" for g in dataclasses.fields(LimitSettings)]
            else:
                keys.append(f.name)
        return keys

    def test_covers_all_fields_in_order(self):
        schema = settings_schema()
        self.assertEqual([row[0] for row in schema], self.all_fields())

    def test_rows(self):
        defaults = Settings()
        envs = set()
        for key, env, default, type_desc, help_text in settings_schema():
            obj = defaults
            for part in key.split("."):
                obj = getattr(obj, part)
            self.assertEqual(default, obj, key)
            self.assertTrue(env and env.upper() == env, key)
            self.assertTrue(type_desc, key)
            self.assertTrue(help_text and "\n" not in help_text, key)
            envs.add(env)
        self.assertEqual(len(envs), len(settings_schema()))  # no duplicate env names

    def test_env_names(self):
        envs = {key: env for key, env, *_ in settings_schema()}
        self.assertEqual(envs["mode"], "EXECUTION_MODE")
        self.assertEqual(envs["role"], "CHAINGRAPH_ROLE")
        self.assertEqual(envs["environment"], "NODE_ENV")
        self.assertEqual(envs["keepalive.pong_wait_ms"], "CHAINGRAPH_KEEPALIVE_PONG_WAIT_MS")
        self.assertEqual(envs["limits.max_connections"], "CHAINGRAPH_MAX_CONNECTIONS")
        self.assertEqual(envs["auth_jwt_secret"], "AUTH_JWT_SECRET")

    def test_each_env_var_is_read(self):
        # Set each variable to a valid non-default value and check the matching field changes.
        samples = {"string": "x", "string (optional)": "x", "boolean": None, "number >= 0": "0.5"}
        for key, env, default, type_desc, _ in settings_schema():
            if type_desc in samples and samples[type_desc] is not None:
                value = samples[type_desc]
            elif type_desc == "boolean":
                value = "false" if default else "true"
            elif type_desc.startswith("number >= "):
                value = str(float(type_desc[len("number >= "):]) + 2.5)
            elif type_desc.startswith("integer"):
                value = "65000" if key == "port" else "123"
            elif type_desc.startswith("one of "):
                choices = type_desc[len("one of ") :].split("|")
                value = next(c for c in choices if c != default)
            else:  # pragma: no cover
                self.fail(f"unexpected type description {type_desc!r}")
            obj = load_settings(env={env: value})
            for part in key.split("."):
                obj = getattr(obj, part)
            self.assertNotEqual(obj, default, key)
