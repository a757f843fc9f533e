from django.apps import AppConfig


class TickerConfig(AppConfig):
    """A live stock-ticker dashboard: the second app on the core, and the recipe for yours."""

    name = "ticker"
    # The header's link (realtime.navigation).
    realtime_pages = [("Ticker", "ticker")]

    def ready(self) -> None:
        """Called once Django is set up: one price feed for the whole cluster, in the background."""
        from realtime import register_job

        from . import feed

        register_job("ticker-feed", feed.run, exclusive=True)
