"""optin-bot: a WhatsApp consent bot in front of Meta's Cloud API.

`bot` is the service side (HTTP, Redis, database, Cloud API); `flows` holds the pure conversation
logic it drives.
"""
