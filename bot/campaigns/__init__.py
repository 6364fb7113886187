"""Re-consent campaigns: ask a chosen audience to reconfirm their consent by a deadline.

`models` (tables), `spec` (what a campaign is, validated), `audience` (who is asked),
`repository` (storage), `dispatcher` (paced, at-most-once sending), `send_guard` (what the
sender tells the campaigns: 130429 throttling and sent marks; at-most-once on the sender's side
is `bot.send_guard`, for every tagged message), `tracking` and `guard` (what happened, and pausing
when quality drops), `wiring` (how the roles run them).
"""
