"""Prometheus metrics of one process, on a registry of its own.

A registry per `Metrics` object (not the global one) keeps tests and several apps in one process
from colliding. Queue depths are read from Redis when `/metrics` is scraped, so the gauge is the
truth of the shared queues, not one process's guess.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from bot import redis_keys

# `*_created` series double the output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: The `part` label values of `optin_event_parts_lost_total` (`bot.parts`).
EVENT_PARTS: Final = (
    "transcript",
    "contact_profile",
    "identity_change",
    "flow_step",
    "locale",
    "hooks",
)
#: The `reason` label values of `optin_dead_events_total` (`bot.inbound`).
DEAD_EVENT_REASONS: Final = ("failed", "undecodable")


class Metrics:
    """The counters, gauges and histograms named in the public contract, and a few more."""

    def __init__(self, *, shared_dir: str | None = None) -> None:
        """`shared_dir` (PROMETHEUS_MULTIPROC_DIR) is set when this process is one of several
        serving as one service (`serve --workers N`): values then live in prometheus-client's
        per-process files there, and `render` sums every process's, so a scrape that any
        process answers reports the whole service."""
        self.shared_dir = shared_dir
        self.registry = CollectorRegistry()
        self.webhook_requests = Counter(
            "optin_webhook_requests",
            "POST /webhook requests by result",
            ["result"],
            registry=self.registry,
        )
        self.events_processed = Counter(
            "optin_events_processed",
            "Events handled by the workers, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.consent_events = Counter(
            "optin_consent_events",
            "Consent ledger events written, by action",
            ["action"],
            registry=self.registry,
        )
        self.outbound_messages = Counter(
            "optin_outbound_messages",
            "Outbound messages by result (sent, sandbox, failed, retried)",
            ["result"],
            registry=self.registry,
        )
        self.crm_deliveries = Counter(
            "optin_crm_deliveries",
            "CRM webhook delivery attempts by result "
            "(delivered, retried, rejected, gone, expired, malformed)",
            ["result"],
            registry=self.registry,
        )
        self.dead_letters_trimmed = Counter(
            "optin_dead_letters_trimmed",
            "Dead events removed from a full dead-letter stream to make room for newer ones",
            ["stream"],
            registry=self.registry,
        )
        self.event_parts_lost = Counter(
            "optin_event_parts_lost",
            "Optional parts of an event (transcript row, profile name, flow step, hooks...) that "
            "failed for good and were skipped so that the event's consent decision still applied",
            ["part"],
            registry=self.registry,
        )
        self.dead_events = Counter(
            "optin_dead_events",
            "Inbound events given up by the workers and put on the dead-letter stream, by reason "
            "(failed: failed 5 times; undecodable: unreadable entry)",
            ["reason"],
            registry=self.registry,
        )
        self.foreign_number_events = Counter(
            "optin_webhook_foreign_number_events",
            "Webhook changes for another business number, kept as unknown events with no "
            "effect, by field",
            ["field"],
            registry=self.registry,
        )
        self.task_restarts = Counter(
            "optin_task_restarts",
            "Restarts of a role's long-running task by its supervisor (bot.supervisor), by task",
            ["task"],
            registry=self.registry,
        )
        self.templates_opt_out_unknown = Counter(
            "optin_templates_opt_out_unknown",
            "Templates sent without knowing whether they carry an opt-out (no "
            "WHATSAPP_BUSINESS_ACCOUNT_ID, or a template the sandbox's list does not name), "
            "by template name",
            ["template"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "optin_queue_depth",
            "Entries in each queue",
            ["queue"],
            registry=self.registry,
            # Read from Redis at scrape time by whichever process is scraped: the latest reading
            # is the truth, not a sum over processes.
            multiprocess_mode="livemostrecent",
        )
        self.webhook_latency = Histogram(
            "optin_webhook_latency_seconds",
            "Time to accept a POST /webhook",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.send_latency = Histogram(
            "optin_send_latency_seconds",
            "Time for the Cloud API to accept one message (including retries)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        for result in (
            "accepted",
            "duplicate",
            "unauthorized",
            "forbidden",
            "bad_request",
            "too_large",
            "unavailable",
        ):
            self.webhook_requests.labels(result=result)
        for outcome in ("sent", "sandbox", "failed", "retried"):
            self.outbound_messages.labels(result=outcome)
        for outcome in ("delivered", "retried", "rejected", "gone", "expired"):
            self.crm_deliveries.labels(result=outcome)
        for part in EVENT_PARTS:
            self.event_parts_lost.labels(part=part)
        for reason in DEAD_EVENT_REASONS:
            self.dead_events.labels(reason=reason)
        for key in (redis_keys.DEAD_LETTERS, redis_keys.CRM_DEAD_LETTERS):
            self.dead_letters_trimmed.labels(stream=key.name)

    def total(self, counter: Counter, **only: tuple[str, ...]) -> int:
        """This process's sum of `counter` over its labels (restricted to the values in
        `only`, by label name): what a heartbeat reports as items handled."""
        value = 0.0
        for metric in counter.collect():
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                if all(sample.labels.get(name) in values for name, values in only.items()):
                    value += sample.value
        return int(value)

    def set_queue_depths(self, depths: dict[str, int]) -> None:
        for queue, depth in depths.items():
            self.queue_depth.labels(queue=queue).set(depth)

    def render(self) -> bytes:
        if self.shared_dir is None:
            return generate_latest(self.registry)
        service = CollectorRegistry()
        multiprocess.MultiProcessCollector(service, path=self.shared_dir)  # type: ignore[no-untyped-call]
        return generate_latest(service)
