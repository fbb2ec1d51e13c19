"""Render a Slack thread (as the emulator stores it) as terminal text, for the demo: the
rendering lives in `bot.slack.text_view` (production code uses it too, for `opsbot thread`)."""

from bot.slack.text_view import block_lines, message_text, thread_text  # noqa: F401
