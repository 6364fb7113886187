"""Re-consent campaigns: ask a chosen audience to reconfirm their consent by a deadline.

`models` (tables), `spec` (what a campaign is, validated), `audience` (who is asked),
`repository` (storage), `dispatcher` (paced, at-most-once sending), `send_guard` (the sender-side
half of at-most-once, and 130429 throttling), `tracking` and `guard` (what happened, and pausing
when quality drops), `wiring` (how the roles run them).
"""
