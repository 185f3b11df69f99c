"""gqlbatch.toml and GQLBATCH_* overrides: what parses, and one precise message per mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gqlbatch.core.config import Settings
from gqlbatch.core.errors import ConfigError
from gqlbatch.ops import config_file
from gqlbatch.ops.config_file import settings_from_toml

EXAMPLE = Path(__file__).parent.parent / "examples" / "gqlbatch.toml"

MINIMAL = """
[upstreams.users]
base_url = "http://127.0.0.1:9001/api/"
"""


def test_minimal_config_takes_the_defaults() -> None:
    settings, server = settings_from_toml(MINIMAL)
    assert server == {}
    users = settings.upstreams["users"]
    assert users.base_url == "http://127.0.0.1:9001/api"
    assert (settings.max_items, settings.max_fanout, users.timeout_ms) == (100, 1000, 10_000)


def _section(text: str, header: str) -> str:
    """The lines of *text* under the table *header* (commented out or not), to the next one."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip("# ").startswith(header))
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip("# ").startswith("[")),
        len(lines),
    )
    return "\n".join(lines[start:end])


@pytest.mark.parametrize(
    ("header", "keys"),
    [
        ("[server]", config_file._SERVER),
        ("[limits]", config_file._LIMITS),
        ("[jobs]", config_file._JOBS),
        ("[persisted_queries]", config_file._PERSISTED),
        ("[retries]", config_file._RETRIES),
        ("[idempotency]", config_file._IDEMPOTENCY),
        ("[cors]", config_file._CORS),
        (
            "[upstreams.blog]",
            config_file._UPSTREAM.keys() - {"bulk", "compensate", "forward_headers"},
        ),
        ("[[upstreams.blog.bulk]]", config_file._BULK),
        ("[[upstreams.blog.compensate]]", config_file._COMPENSATE_ROUTE),
    ],
)
def test_the_example_config_shows_every_key(header: str, keys: object) -> None:
    # docs/configuration.md calls examples/gqlbatch.toml "a commented example of every key":
    # a key added to the file format and not to the example fails here.
    section = _section(EXAMPLE.read_text(), header)
    missing = [k for k in keys if not re.search(rf"^#?\s*{k}\s*=", section, re.M)]
    assert not missing, f"examples/gqlbatch.toml {header} lacks {missing}"


def test_example_config_parses_with_every_section() -> None:
    settings, server = settings_from_toml(EXAMPLE.read_text(), source=str(EXAMPLE))
    assert server["port"] == 8000
    assert set(settings.upstreams) == {"blog", "billing"}
    blog = settings.upstreams["blog"]
    assert blog.share_inflight and len(blog.bulk) == 3
    assert [r.many for r in blog.bulk] == [False, True, True]
    assert [r.match for r in blog.compensate] == ["POST /posts", "PUT /posts/{id}/title"]
    assert (settings.retries.max_attempts, settings.idempotency_max_records) == (3, 10_000)
    assert settings.max_outstanding_total == 2000
    assert settings.door_options == {
        "json": {"mode": "PARALLEL", "onError": "CONTINUE", "atomic": False}
    }


def test_the_store_url_comes_from_the_file_or_the_environment() -> None:
    assert settings_from_toml(MINIMAL)[0].store_url is None
    file = settings_from_toml("[store]\nurl = 'redis://r:6379/0'\n" + MINIMAL)[0]
    env = settings_from_toml(MINIMAL, {"GQLBATCH_STORE__URL": "redis://e:6379/1"})[0]
    assert (file.store_url, env.store_url) == ("redis://r:6379/0", "redis://e:6379/1")


def test_environment_overrides_the_file() -> None:
    settings, server = settings_from_toml(
        MINIMAL,
        {
            "GQLBATCH_LIMITS__MAX_ITEMS": "20",
            "GQLBATCH_UPSTREAMS__USERS__SHARE_INFLIGHT": "true",
            "GQLBATCH_UPSTREAMS__USERS__FORWARD_HEADERS": '["Authorization"]',
            "GQLBATCH_SERVER__HOST": "0.0.0.0",
            "GQLBATCH_UPSTREAMS__ORDERS__BASE_URL": "http://127.0.0.1:9002",
            "OTHER": "ignored",
        },
    )
    assert settings.max_items == 20
    assert settings.upstreams["users"].share_inflight is True
    assert settings.upstreams["users"].forward_headers == ("Authorization",)
    assert settings.upstreams["orders"].base_url == "http://127.0.0.1:9002"
    assert server == {"host": "0.0.0.0"}


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[upstreams.a\n", {}, "g.toml: not valid TOML"),
        ("", {}, "g.toml: [upstreams] needs at least one table"),
        (
            "[limitz]\n" + MINIMAL,
            {},
            "g.toml: unknown key limitz (known: cors, doors, graphiql, headers,",
        ),
        (
            "[limits]\nmax_items = -1\n" + MINIMAL,
            {},
            "g.toml: limits.max_items must be a positive integer, got -1",
        ),
        (
            "[limits]\nmax_items = '5'\n" + MINIMAL,
            {},
            "g.toml: limits.max_items must be an integer, got '5'",
        ),
        (
            MINIMAL,
            {"GQLBATCH_LIMITS__MAX_FANOUT": "lots"},
            "GQLBATCH_LIMITS__MAX_FANOUT: limits.max_fanout must be an integer, got 'lots'",
        ),
        ("[upstreams.a]\ntimeout_ms = 5\n", {}, "g.toml: upstreams.a.base_url is required"),
        (
            "[upstreams.a]\nbase_url = 'ftp://x'\n",
            {},
            "upstreams.a.base_url 'ftp://x' must start with http:// or https://",
        ),
        (MINIMAL + "colour = 'red'\n", {}, "unknown key upstreams.users.colour"),
        (
            MINIMAL + "share_inflight = 1\n",
            {},
            "upstreams.users.share_inflight must be a boolean (true or false), got 1",
        ),
        (
            MINIMAL + "[[upstreams.users.bulk]]\nmatch = '/users'\n",
            {},
            "upstreams.users.bulk[0]: bulk route '/users': match must end with /{id}",
        ),
        (
            MINIMAL + "[[upstreams.users.bulk]]\nmatch = '/u/{id}'\nstyle = 'csv'\n",
            {},
            "style must be 'repeat' or 'comma', got 'csv'",
        ),
        (
            MINIMAL + "[[upstreams.users.bulk]]\nmatch = '/u?a={id}&b=1'\n",
            {},
            "a query match is /path?param={id}, one parameter",
        ),
        (
            MINIMAL + "[[upstreams.users.bulk]]\nmany = true\n",
            {},
            "upstreams.users.bulk[0].match is required",
        ),
        ("[headers]\nforward = [1]\n" + MINIMAL, {}, "headers.forward must be a list of header"),
        ("[server]\nport = 'x'\n" + MINIMAL, {}, "server.port must be an integer"),
        (
            "[doors.json]\nmode = 'FAST'\n" + MINIMAL,
            {},
            "doors.json.mode must be one of PARALLEL, SEQUENTIAL, got 'FAST'",
        ),
        (
            "[doors.rest]\natomic = true\n" + MINIMAL,
            {},
            "unknown key doors.rest (known: batch_paths, graphql",
        ),
        ("[doors.json]\natomic = 'yes'\n" + MINIMAL, {}, "doors.json.atomic must be a boolean"),
        (
            "[store]\nurl = 'http://x'\n" + MINIMAL,
            {},
            "store.url 'http://x' must start with redis://",
        ),
    ],
    ids=[
        "toml",
        "no-upstreams",
        "unknown-section",
        "negative",
        "string-int",
        "env-bad",
        "no-base-url",
        "scheme",
        "unknown-key",
        "bool",
        "bulk-match",
        "bulk-style",
        "bulk-query",
        "bulk-no-match",
        "forward-type",
        "port",
        "door-mode",
        "unknown-door",
        "door-atomic",
        "store-scheme",
    ],
)
def test_each_mistake_names_the_key_and_why(text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_toml(text, env, source="g.toml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_settings_from_urls_still_work_without_a_file() -> None:
    settings = Settings.from_upstream_urls(["a=http://a.test", "b=http://b.test"])
    assert settings.default_upstream() is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\ntrusted_proxies = [1]\n", "server.trusted_proxies must be a list of addresses"),
        ('[server]\ntrusted_proxies = ["nope"]\n', "'nope' is not an address"),
        ("[server]\nheader_timeout_s = 0\n", "header_timeout_s must be a positive integer"),
        ("[limits]\nmax_json_depth = -1\n", "max_json_depth must be a positive integer"),
        ("introspection = 1\n", "introspection must be a boolean"),
        ("[idempotency]\nmax_bytes = 0\n", "idempotency_max_bytes must be a positive integer"),
    ],
)
def test_hardening_settings_are_checked(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings_from_toml(text + '[upstreams.a]\nbase_url = "http://a"\n')


def test_graphiql_is_a_switch_or_a_table() -> None:
    table, _ = settings_from_toml('[graphiql]\nenabled = false\nassets_dir = "/srv/g"\n' + MINIMAL)
    assert (table.graphiql, table.graphiql_assets_dir) == (False, "/srv/g")
    switch, _ = settings_from_toml("graphiql = false\n" + MINIMAL)
    assert (switch.graphiql, switch.graphiql_assets_dir) == (False, None)
    with pytest.raises(ConfigError, match=r"unknown key graphiql\.asset_dir"):
        settings_from_toml('[graphiql]\nasset_dir = "/srv/g"\n' + MINIMAL)


def test_every_setting_has_its_key_in_the_file_and_the_same_type() -> None:
    # Issue 26: the file's type tables repeated Settings' fields by hand, with no test. The
    # tables now take their types from the settings; each field is set by one key.
    import dataclasses

    from gqlbatch.core.config import Settings
    from gqlbatch.ops import config_file as c

    by_key = {
        *c._LIMITS,
        *(k for k in c._SERVER if k not in c._LISTEN),
        *(f"jobs_{k}" for k in c._JOBS),
        *(f"idempotency_{k}" for k in c._IDEMPOTENCY),
        *c._PERSISTED_FIELDS.values(),
        *(f"persisted_queries_{k}" for k in c._PERSISTED if k not in c._PERSISTED_FIELDS),
        "graphiql",  # [graphiql] enabled, or graphiql = true
        *(f"graphiql_{k}" for k in c._GRAPHIQL if k != "enabled"),
        "forward_headers",  # [headers] forward
        "introspection",
        "retries",
        "cors",
        "store_url",  # [store] url
        "door_options",  # [doors.*]
        *c._DOOR_PATHS,  # [doors] batch_paths, operations_paths
        "operations",  # [operations.NAME]
        "upstreams",
    }
    fields = {f.name for f in dataclasses.fields(Settings) if f.init}
    assert by_key == fields


def test_door_paths_come_from_the_file_or_the_environment_and_are_checked() -> None:
    base = '[upstreams.default]\nbase_url = "http://127.0.0.1:9"\n'
    settings, _ = settings_from_toml(base + '[doors]\nbatch_paths = ["/v4.0/words/batch"]\n')
    assert settings.batch_paths == ("/v4.0/words/batch",)
    env = {"GQLBATCH_DOORS__BATCH_PATHS": '["/ucwa/{app}/batch"]'}
    settings, _ = settings_from_toml(base, env)
    assert settings.batch_paths == ("/ucwa/{app}/batch",)
    for bad, why in [
        ("words/batch", "must start with '/'"),
        ("/a/{x/batch", "segment '{x'"),
        ("/$batch", "is a door already"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(why)):
            settings_from_toml(base + f'[doors]\nbatch_paths = ["{bad}"]\n')
