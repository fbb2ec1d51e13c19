"""Tests of bot.ask."""
