from __future__ import annotations

from sqlmodel import Session, col, delete, select

from storage.tables import Subscription


class SubscriptionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def find(self, channel: str, backend: str) -> Subscription | None:
        statement = select(Subscription).where(
            Subscription.channel == channel, Subscription.backend == backend
        )
        return self.session.exec(statement).first()

    def add(self, subscription: Subscription) -> Subscription:
        self.session.add(subscription)
        self.session.flush()
        return subscription

    def remove(self, channel: str, backend: str | None) -> int:
        """Delete one backend's subscription, or all of the channel's when backend is None."""
        statement = delete(Subscription).where(col(Subscription.channel) == channel)
        if backend is not None:
            statement = statement.where(col(Subscription.backend) == backend)
        result = self.session.exec(statement)
        return int(result.rowcount or 0)

    def for_channel(self, channel: str) -> list[Subscription]:
        statement = (
            select(Subscription)
            .where(Subscription.channel == channel)
            .order_by(col(Subscription.backend))
        )
        return list(self.session.exec(statement))

    def channels_following(self, backend: str) -> list[str]:
        """Channels subscribed to this backend or to all ("*"), each once, in a stable order."""
        statement = (
            select(Subscription.channel)
            .where(col(Subscription.backend).in_([backend, "*"]))
            .distinct()
            .order_by(col(Subscription.channel))
        )
        return list(self.session.exec(statement))
