"""collectors.yaml: the seed's format, env expansion, and errors that say where and what."""

from __future__ import annotations

from pathlib import Path

import pytest

from market_bridge.config.collectors import (
    CollectorConfig,
    ConfigError,
    load_collectors_config,
    masked,
    parse_collectors_config,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "collectors.example.yaml"
ENV = {"ZERODHA_API_KEY": "kitekey1234567890", "ZERODHA_ACCESS_TOKEN": "tokensecret0987654321"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collectors.yaml"
    path.write_text(text)
    return path


def test_example_file_loads_with_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    config = load_collectors_config(EXAMPLE)
    assert config.names == ["primary", "sectors"]
    primary, sectors = config.collectors
    assert primary.api_key == ENV["ZERODHA_API_KEY"]
    assert primary.access_token == ENV["ZERODHA_ACCESS_TOKEN"]
    assert (primary.auto_start, primary.watchlists, primary.mode) == (
        True,
        ("NIFTY50", "BANKNIFTY"),
        "full",
    )
    assert (sectors.auto_start, sectors.watchlists, sectors.mode) == (
        False,
        ("IT", "PHARMA"),
        "quote",
    )
    assert config.auto_start == [primary]
    assert primary.has_credentials
    assert "RELIANCE" in primary.subscription() and "HDFCBANK" in primary.subscription()


def test_defaults_and_optional_keys(tmp_path: Path) -> None:
    config = parse_collectors_config(
        "collectors:\n  - name: sim\n    watchlists: [it]\n    symbols: [RELIANCE, 'nse:nifty 50', BSE:SENSEX, TCS]\n",
        tmp_path / "c.yaml",
        {},
    )
    (c,) = config.collectors
    assert (c.auto_start, c.mode, c.api_key, c.access_token, c.has_credentials) == (
        False,
        "quote",
        None,
        None,
        False,
    )
    assert c.watchlists == ("IT",)
    assert c.symbols == ("RELIANCE", "NIFTY 50", "BSE:SENSEX", "TCS")
    sub = c.subscription()
    assert sub[:2] == ["TCS", "INFY"] and sub[-3:] == ["RELIANCE", "NIFTY 50", "BSE:SENSEX"]
    assert sub.count("TCS") == 1


def test_env_expansion_forms() -> None:
    text = (
        "collectors:\n"
        "  - name: ${NAME:-fallback}\n"
        "    api_key: ${KEY}\n"
        "    access_token: 'pre-${TOKEN}-$${LITERAL}'\n"
        "    auto_start: ${AUTO}\n"
        "    mode: ${MODE:-ltp}\n"
        "    watchlists: ['${LIST}', \"${MORE:-auto}\"]\n"
    )
    (c,) = parse_collectors_config(
        text, "c.yaml", {"KEY": "k" * 16, "TOKEN": "t", "AUTO": "true", "LIST": "metal"}
    ).collectors
    assert c.name == "fallback" and c.api_key == "k" * 16
    assert c.access_token == "pre-t-${LITERAL}"
    assert c.auto_start is True and c.mode == "ltp" and c.watchlists == ("METAL", "AUTO")


def test_empty_secret_means_simulator() -> None:
    (c,) = parse_collectors_config(
        "collectors:\n  - name: a\n    api_key: ${K:-}\n    watchlists: [IT]\n", "c.yaml", {}
    ).collectors
    assert c.api_key is None and not c.has_credentials


def test_yaml_merge_keys_share_settings() -> None:
    text = (
        "collectors:\n"
        "  - &base\n"
        "    name: one\n"
        "    mode: full\n"
        "    watchlists: [IT]\n"
        "  - <<: *base\n"
        "    name: two\n"
    )
    one, two = parse_collectors_config(text, "c.yaml", {}).collectors
    assert (two.name, two.mode, two.watchlists) == ("two", "full", ("IT",))


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "collectors:\n", "collectors: []\n"])
def test_empty_configs_have_no_collectors(text: str) -> None:
    assert parse_collectors_config(text, "c.yaml", {}).collectors == ()


# ---- one test per bad-config case: file, line, column and key in the message -----------

BAD = {
    "yaml_syntax": (
        "collectors:\n  - name: a\n   mode: full\n",
        3,
        None,
        "YAML syntax error",
    ),
    "unknown_key_with_suggestion": (
        "collectors:\n  - name: a\n    watchlist: [NIFTY50]\n",
        3,
        "collectors[0].watchlist",
        "did you mean 'watchlists'?",
    ),
    "unknown_top_level_key": (
        "collector:\n  - name: a\n",
        1,
        "collector",
        "did you mean 'collectors'?",
    ),
    "unknown_watchlist": (
        "collectors:\n  - name: a\n    watchlists:\n      - NIFTY50\n      - NIFTY5O\n",
        5,
        "collectors[0].watchlists",
        "valid watchlists: NIFTY50, BANKNIFTY",
    ),
    "bad_mode": (
        "collectors:\n  - name: a\n    watchlists: [IT]\n    mode: fulll\n",
        4,
        "collectors[0].mode",
        "use one of: ltp, quote, full",
    ),
    "missing_env_var": (
        "collectors:\n  - name: a\n    api_key: ${ZERODHA_API_KEY}\n    watchlists: [IT]\n",
        3,
        "collectors[0].api_key",
        "environment variable ZERODHA_API_KEY is not set",
    ),
    "unterminated_env_ref": (
        "collectors:\n  - name: a\n    api_key: ${ZERODHA_API_KEY\n    watchlists: [IT]\n",
        3,
        "collectors[0].api_key",
        "unterminated",
    ),
    "duplicate_collector_name": (
        "collectors:\n  - name: a\n    watchlists: [IT]\n  - name: A\n    watchlists: [AUTO]\n",
        4,
        "collectors[1].name",
        "duplicate collector name 'A' (first defined at line 2)",
    ),
    "duplicate_key": (
        "collectors:\n  - name: a\n    mode: ltp\n    watchlists: [IT]\n    mode: full\n",
        5,
        "collectors[0].mode",
        "already set at line 3",
    ),
    "watchlists_not_a_list": (
        "collectors:\n  - name: a\n    watchlists: NIFTY50\n",
        3,
        "collectors[0].watchlists",
        "expected a list",
    ),
    "auto_start_not_bool": (
        "collectors:\n  - name: a\n    auto_start: maybe\n    watchlists: [IT]\n",
        3,
        "collectors[0].auto_start",
        "expected true or false, got 'maybe'",
    ),
    "name_not_a_string": (
        "collectors:\n  - name: [a]\n    watchlists: [IT]\n",
        2,
        "collectors[0].name",
        "expected a string, got a list",
    ),
    "bad_name": (
        "collectors:\n  - name: my collector!\n    watchlists: [IT]\n",
        2,
        "collectors[0].name",
        "invalid collector name",
    ),
    "collectors_not_a_list": (
        "collectors:\n  name: a\n",
        2,
        "collectors",
        "expected a list of collectors",
    ),
    "collector_not_a_mapping": (
        "collectors:\n  - primary\n",
        2,
        "collectors[0]",
        "expected a collector",
    ),
    "missing_name": (
        "collectors:\n  - mode: full\n    watchlists: [IT]\n",
        2,
        "collectors[0].name",
        "missing required key 'name'",
    ),
    "invalid_symbol": (
        "collectors:\n  - name: a\n    symbols: [RELIANCE, 'XYZ:FOO']\n",
        3,
        "collectors[0].symbols",
        "unknown exchange 'XYZ'",
    ),
    "subscribes_to_nothing": (
        "collectors:\n  - name: a\n    mode: full\n",
        2,
        "collectors[0].watchlists",
        "subscribes to nothing",
    ),
    "top_level_not_a_mapping": (
        "- name: a\n",
        1,
        None,
        "expected a mapping with a 'collectors:' list",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_config_names_file_line_and_key(tmp_path: Path, case: str) -> None:
    text, line, key, problem = BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_collectors_config(path, env={})
    err = info.value
    message = str(err)
    assert message.startswith(f"{path}: line {line}, column "), message
    assert err.line == line and err.column is not None and err.path == str(path)
    if key is not None:
        assert err.key == key and f": {key}: " in message, message
    assert problem in message, message


def test_unknown_watchlist_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'NIFTY50'"):
        parse_collectors_config(
            "collectors:\n  - name: a\n    watchlists: [NIFTY5O]\n", tmp_path / "c.yaml", {}
        )


def test_missing_explicit_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MB_COLLECTORS_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="nope.yaml: file not found; create it"):
        load_collectors_config()


def test_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MB_COLLECTORS_CONFIG", raising=False)
    monkeypatch.setenv("MB_HOME", str(tmp_path))
    absent = load_collectors_config(env={})
    assert absent.path == tmp_path / "collectors.yaml" and not absent.exists
    assert absent.collectors == ()
    write(tmp_path, "collectors:\n  - name: home\n    watchlists: [IT]\n")
    assert load_collectors_config(env={}).names == ["home"]
    other = tmp_path / "other.yaml"
    other.write_text("collectors:\n  - name: other\n    watchlists: [IT]\n")
    monkeypatch.setenv("MB_COLLECTORS_CONFIG", str(other))
    assert load_collectors_config(env={}).names == ["other"]
    assert load_collectors_config(tmp_path / "collectors.yaml", env={}).names == ["home"]


# ---- secrets ---------------------------------------------------------------------------

SECRET = "SuperSecretValue0123456789"


@pytest.mark.parametrize(
    "text",
    [
        # an error elsewhere in a collector that holds a literal secret
        f"collectors:\n  - name: a\n    api_key: {SECRET}\n    mode: bogus\n    watchlists: [IT]\n",
        # a YAML syntax error on the secret's own line (PyYAML would quote the line)
        f"collectors:\n  - name: a\n    access_token: '{SECRET}\n",
        # a secret from the environment put where it does not belong
        "collectors:\n  - name: a\n    mode: ${ZERODHA_API_KEY}\n    watchlists: [IT]\n",
        "collectors:\n  - name: a\n    watchlists:\n      - ${ZERODHA_API_KEY}\n",
        "collectors:\n  - name: a\n    symbols: ['${ZERODHA_API_KEY}:X']\n",
        "collectors:\n  - name: a\n    auto_start: ${ZERODHA_API_KEY}\n    watchlists: [IT]\n",
        f"collectors:\n  - name: a\n    api_secret: {SECRET}\n    watchlists: [IT]\n    x: 1\n",
    ],
)
def test_secrets_never_appear_in_errors(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_collectors_config(text, "c.yaml", {"ZERODHA_API_KEY": SECRET})
    assert SECRET not in str(info.value)
    assert SECRET[:12] not in str(info.value)


def test_repr_masks_secrets() -> None:
    c = CollectorConfig(name="a", api_key=SECRET, access_token="short", api_secret=SECRET)
    for text in (repr(c), str(c), str(c.public_dict())):
        assert SECRET not in text and "short" not in text
    assert "Su****89" in repr(c)
    assert c.public_dict()["access_token"] == "****" == c.masked_access_token
    assert c.masked_api_key == "Su****89"


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        (None, "<unset>"),
        ("", "<unset>"),
        ("abc", "****"),
        ("abcdefghijk", "****"),
        ("abcdefghijkl", "ab****kl"),
    ],
)
def test_masked(secret: str | None, shown: str) -> None:
    assert masked(secret) == shown


def test_unquoted_env_ref_in_a_flow_list_gets_a_quoting_hint() -> None:
    with pytest.raises(ConfigError, match=r"quote \$\{\.\.\.\} references") as info:
        parse_collectors_config(
            "collectors:\n  - name: a\n    watchlists: [${LIST}]\n", "c.yaml", {"LIST": "IT"}
        )
    assert info.value.line == 3
