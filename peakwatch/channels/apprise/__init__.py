"""The apprise channel: ``config.py`` (its registry struct and checks),
``sender.py`` (delivery)."""
