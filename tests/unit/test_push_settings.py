"""Push settings from the environment: defaults, values, and refusals that name the variable."""

from __future__ import annotations

import pytest

from hubbub.config import ConfigError, Settings
from hubbub.push.expo import SEND_URL
from hubbub.push.settings import PushSettings


def test_defaults() -> None:
    push = Settings.from_env({}).push
    assert push == PushSettings()
    assert (push.enabled, push.expo_url, push.window, push.preview) == (True, SEND_URL, 3.0, True)
    assert push.webhook_url is None


def test_values() -> None:
    push = PushSettings.from_env(
        {
            "HUBBUB_PUSH": "off",
            "HUBBUB_EXPO_PUSH_URL": "http://127.0.0.1:9000/send",
            "HUBBUB_EXPO_ACCESS_TOKEN": "tok",
            "HUBBUB_PUSH_WEBHOOK_URL": "https://app.example.com/hook",
            "HUBBUB_PUSH_WEBHOOK_SECRET": "s3cret",
            "HUBBUB_PUSH_WINDOW": "0",
            "HUBBUB_PUSH_PREVIEW": "generic",
            "HUBBUB_PUSH_MAX_AGE": "60",
            "HUBBUB_PUSH_LEASE": "30",
        }
    )
    assert not push.enabled and not push.preview
    assert push.expo_url == "http://127.0.0.1:9000/send" and push.expo_access_token == "tok"
    assert push.webhook_url == "https://app.example.com/hook" and push.webhook_secret == "s3cret"
    assert (push.window, push.max_age, push.lease) == (0.0, 60.0, 30.0)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HUBBUB_PUSH_WINDOW": "soon"}, "HUBBUB_PUSH_WINDOW"),
        ({"HUBBUB_PUSH_LEASE": "0"}, "HUBBUB_PUSH_LEASE"),
        ({"HUBBUB_PUSH_MAX_AGE": "-1"}, "HUBBUB_PUSH_MAX_AGE"),
        ({"HUBBUB_PUSH_PREVIEW": "full"}, "HUBBUB_PUSH_PREVIEW"),
        ({"HUBBUB_EXPO_PUSH_URL": "exp.host/send"}, "HUBBUB_EXPO_PUSH_URL"),
        ({"HUBBUB_PUSH_WEBHOOK_URL": "https://app.example.com/hook"}, "HUBBUB_PUSH_WEBHOOK_SECRET"),
    ],
)
def test_refusals_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)
