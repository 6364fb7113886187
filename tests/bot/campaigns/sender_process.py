"""The sender role as `optin-bot sender` runs it (sender loop + campaign dispatcher), with the
timings shortened so a test can kill it and watch another take over within seconds.

    python tests/bot/campaigns/sender_process.py   # configured by the environment

The lease of a campaign lapses after 5 s instead of 10, unacknowledged messages are reclaimed
after 5 s instead of 60, and a send whose outcome is unknown waits 30 s (not 5 minutes) for
Meta's status before it is sent again. Everything else is the production wiring of `bot.roles`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bot.campaigns.wiring import CampaignSending
from bot.ratelimit import RateLimiter
from bot.send_guard import SendGuard
from bot.sender import RefusalReporter, Sender
from bot.services import open_services
from bot.settings import load_settings


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings = load_settings(env_file=None)
    async with open_services(settings, auto_migrate=False) as services:
        # Long enough for the test process (playing Meta, on a loaded machine) to report the
        # `sent` status of a message that reached it just before the kill.
        campaigns = CampaignSending.build(
            services,
            transport=SendGuard(services.transport, services.redis, grace_seconds=30.0),
            lease_ttl_ms=5000,
        )
        sender = Sender(
            services.redis,
            services.transcript,
            campaigns.transport,
            RateLimiter(
                services.redis, f"optin:rate:{settings.phone_number_id}", settings.send_rate
            ),
            services.metrics,
            consumer=services.consumer,
            on_permanent_failure=campaigns.on_failure(
                RefusalReporter(services.inbound_queue, settings.phone_number_id)
            ),
            visibility_ms=5000,
        )
        tasks = [asyncio.create_task(sender.run(stop)), *campaigns.start(stop)]
        print("ready", flush=True)
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
