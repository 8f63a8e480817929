"""Option values every command group shares: one line and exit status 2 for a bad one."""

from __future__ import annotations

import pytest

from synack.apps.chat import ChatConfig
from synack.apps.services import SERVICE_NAMES
from synack.apps.time.fmtproto import FormatService
from synack.apps.udpchat.core import UdpChatPeer
from synack.cli.args import parse_services, port_number
from synack.cli.main import build_parser, main
from synack.errors import LocalProtocolError, UsageError


@pytest.mark.parametrize(
    "argv",
    [
        ["chat", "serve", "--port", "-1"],
        ["chat", "serve", "--heartbeat", "nan"],
        ["chat", "serve", "--idle-timeout", "inf"],
        ["chat", "serve", "--rate", "-1"],
        ["chat", "serve", "--rate", "nan"],
        ["chat", "join", "--nick", "a", "--port", "65536"],
        ["chat", "say", "--nick", "a", "--port", "x", "hi"],
        ["time", "serve", "--rate", "-1"],
        ["time", "serve", "--burst", "inf"],
        ["time", "query", "--timeout", "inf"],
        ["time", "query", "--timeout", "1e300"],
        ["udpchat", "--name", "a", "--timeout", "nan"],
        ["udpchat", "--name", "a", "--port", "-5"],
        ["time", "query", "--port", "0"],
    ],
)
def test_bad_option_value_is_one_line_and_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # argparse refuses these before anything binds, connects or waits.
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    option = [a for a in argv if a.startswith("--")][-1]  # the one given the bad value
    assert err.count("\n") == 1 and option in err, err


@pytest.mark.parametrize(
    "kwargs",
    [{"heartbeat": float("nan")}, {"idle_timeout": float("inf")}, {"rate": float("nan")}],
)
def test_chat_config_refuses_non_finite(kwargs: dict[str, float]) -> None:
    # NaN compares false with everything: a `<= 0` check lets it through, and a NaN timer
    # deadline breaks the ordering of the event loop's timer heap for every client.
    with pytest.raises(LocalProtocolError):
        ChatConfig(**kwargs)  # type: ignore[arg-type]


def test_cores_refuse_non_finite() -> None:
    with pytest.raises(LocalProtocolError):
        UdpChatPeer("a", initial_timeout=float("nan"))
    with pytest.raises(ValueError):
        FormatService(rate=float("nan"))
    with pytest.raises(ValueError):
        FormatService(rate=1.0, burst=float("inf"))


def test_port_number() -> None:
    assert [port_number(t) for t in ("0", "80", "65535")] == [0, 80, 65535]
    assert [port_number(t) for t in ("-1", "65536", "x", "", "1.5")] == [None] * 5


def test_parse_services() -> None:
    assert parse_services("echo:7,discard:9, chargen:0", SERVICE_NAMES) == [
        ("echo", 7),
        ("discard", 9),
        ("chargen", 0),
    ]
    for bad in ("echo", "ssh:22", "echo:x", "echo:70000", "echo:-1", ""):
        with pytest.raises(UsageError):
            parse_services(bad, SERVICE_NAMES)
    # Names accepted besides the listed ones still need a good port.
    assert parse_services("echo:7,chat:0", SERVICE_NAMES, also=("chat",)) == [
        ("echo", 7),
        ("chat", 0),
    ]
    with pytest.raises(UsageError, match="bad port in 'chat:x'"):
        parse_services("chat:x", SERVICE_NAMES, also=("chat",))


@pytest.mark.parametrize(
    ("argv", "host", "port"),
    [
        (["serve"], "127.0.0.1", None),
        (["chat", "serve"], "127.0.0.1", 8898),
        (["chat", "join", "--nick", "a", "--host", "10.1.1.1"], "10.1.1.1", 8898),
        (["time", "serve"], "127.0.0.1", 9000),
        (["time", "query"], "127.0.0.1", None),
        (["udpchat", "--name", "a", "--port", "0"], "127.0.0.1", 0),
    ],
)
def test_host_and_port_defaults(argv: list[str], host: str, port: int | None) -> None:
    args = build_parser(argv).parse_args(argv)
    assert args.host == host
    assert getattr(args, "port", None) == port


@pytest.mark.parametrize("port", ["0", "65536", "x"])
def test_nc_port_is_a_server_port(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["stack", "nc", "--tap", "t0", "--ip", "10.0.0.2/24", "10.0.0.1", port])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PORT" in err and "1..65535" in err, err
