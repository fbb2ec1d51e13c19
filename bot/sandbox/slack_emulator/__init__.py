"""A Slack Web API emulator on loopback, for tests and the demo.

    from bot.sandbox.slack_emulator import SlackEmulator
    with SlackEmulator() as emu:
        client = WebClient(token=emu.bot_token, base_url=emu.base_url)
        client.chat_postMessage(channel="#incidents", text="hi")
        assert emu.messages("C0OPSBOT")[0]["text"] == "hi"

See `emulator.py` for the API, `validation.py` for the OpenAPI argument check and its
documented allow-lists, `blockkit.py` for the Block Kit limits, `faults.py` for answers held
back after the call took effect (`delay_answer`).
"""

from bot.sandbox.slack_emulator.emulator import UPLOAD_PSEUDO_METHOD, SlackCall, SlackEmulator
from bot.sandbox.slack_emulator.faults import HeldAnswer
from bot.sandbox.slack_emulator.persistence import WorkspaceFileError
from bot.sandbox.slack_emulator.state import (
    BOT_ID,
    BOT_USER_ID,
    DEFAULT_CHANNEL_ID,
    DEFAULT_TEAM_ID,
    GENERAL_CHANNEL_ID,
    ONCALL_GROUP_ID,
)

__all__ = [
    "BOT_ID",
    "BOT_USER_ID",
    "DEFAULT_CHANNEL_ID",
    "DEFAULT_TEAM_ID",
    "GENERAL_CHANNEL_ID",
    "HeldAnswer",
    "ONCALL_GROUP_ID",
    "UPLOAD_PSEUDO_METHOD",
    "SlackCall",
    "SlackEmulator",
    "WorkspaceFileError",
]
