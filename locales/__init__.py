"""Conversation texts and keywords, one TOML file per language (data only; see bot.locales)."""
