"""Option values every command group shares: one line and exit status 2 for a bad one."""

from __future__ import annotations

import pytest

from synack.apps.chat import ChatConfig
from synack.apps.time.fmtproto import FormatService
from synack.apps.udpchat.core import UdpChatPeer
from synack.cli.main import main
from synack.errors import LocalProtocolError


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
