"""What every listener needs, and the two things they all do: start a job, answer the user.

Listeners stay thin: parse, call a service, render. Any error a user can fix comes back as the
same TunebridgeError the HTTP API renders; anything else becomes a short apology with a
reference, never a stack trace in Slack.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from slack_bolt.context.respond import Respond

from bot.blocks.messages import error_message
from bot.blocks.text import section
from bot.commands import Start
from bot.intake import DatasetIntake
from bot.oncall import OncallDirectory
from storage.database import DatabaseUnavailable
from storage.tables import Job
from tunebridge import access, jobs
from tunebridge.errors import InvalidInput, Problem, TunebridgeError
from tunebridge.jobs import Actor, CreatedJob, JobRequest
from tunebridge.runtime import Runtime

log = logging.getLogger(__name__)

OPENAI_DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"  # the seed's example


@dataclass(frozen=True)
class Caller:
    """Who sent a command or clicked a button, and where."""

    user: str
    channel: str | None
    team: str | None = None

    @property
    def creator(self) -> str:
        return f"slack:{self.user}"

    def actor(self) -> Actor:
        return Actor(name=self.creator, source="slack",
                     remote=f"slack:{self.team or '?'}/{self.channel or '?'}")


@dataclass
class BotContext:
    runtime: Runtime
    intake: DatasetIntake
    oncall: OncallDirectory

    def wake_poller(self) -> None:
        """Submit or cancel now rather than at the next poll interval."""
        self.runtime.wake_poll()

    def backends(self) -> list[str]:
        return self.runtime.registry.names() or [self.runtime.settings.default_backend]

    def default_backend(self) -> str:
        names = self.backends()
        preferred = self.runtime.settings.default_backend
        return preferred if preferred in names else names[0]

    def default_model(self, backend: str) -> str:
        if backend == "openai":
            return OPENAI_DEFAULT_MODEL
        return self.runtime.settings.local_base_model

    def cancel(self, job_id: str, caller: Caller) -> Job:
        """Creator, on-call or admin; the on-call directory is asked only for non-creators."""
        job = access.cancel_as(db=self.runtime.db, clock=self.runtime.clock, job_id=job_id,
                               actor=caller.actor(), grants=lambda: self.oncall.grants(caller.user))
        self.wake_poller()
        return job

    def approve(self, job_id: str, caller: Caller) -> Job:
        """On-call or admin only: a cost cap asks for someone other than the creator."""
        job = access.approve_as(db=self.runtime.db, clock=self.runtime.clock, job_id=job_id,
                                actor=caller.actor(),
                                grants=lambda: self.oncall.grants(caller.user))
        self.wake_poller()
        return job

    def start_job(self, command: Start, caller: Caller) -> CreatedJob:
        if not command.source:
            raise InvalidInput("missing_dataset", "Which data? Attach a JSONL file or give a "
                               "dataset id or URL.", [Problem("missing_dataset", "No dataset.",
                                                              field="dataset")])
        training = self.intake.resolve(command.source, creator=caller.creator)
        validation = (self.intake.resolve(command.validation, creator=caller.creator)
                      if command.validation else None)
        backend = command.backend or self.default_backend()
        runtime = self.runtime
        created = jobs.create_job(
            db=runtime.db, registry=runtime.registry, clock=runtime.clock,
            policy=runtime.job_policy, request=JobRequest(
                training_dataset_id=training.id, base_model=command.base_model
                or self.default_model(backend), backend=backend,
                method=command.method or "sft",
                validation_dataset_id=validation.id if validation else None,
                hyperparameters=dict(command.hyperparameters), suffix=command.suffix,
                notify_channel=caller.channel),
            creator=caller.creator, default_channel=runtime.settings.slack_default_channel)
        self.wake_poller()
        return created


@contextmanager
def answering(respond: Respond) -> Iterator[None]:
    """Run a listener body; whatever goes wrong, the user gets a readable ephemeral answer."""
    try:
        yield
    except TunebridgeError as error:
        text, blocks = error_message(error)
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
    except DatabaseUnavailable:
        log.warning("database unavailable during a Slack request")
        respond(text="tunebridge's database is unavailable right now; try again in a minute.",
                response_type="ephemeral", replace_original=False)
    except Exception:
        reference = uuid.uuid4().hex[:8]
        log.exception("slack listener failed", extra={"reference": reference})
        text = f"Something went wrong on our side (reference `{reference}`)."
        respond(text=text, blocks=[section(f":boom: {text}")], response_type="ephemeral",
                replace_original=False)
