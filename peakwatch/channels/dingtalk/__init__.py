"""The dingtalk channel: ``config.py`` (its registry struct and checks),
``message.py`` (what it sends), ``sender.py`` (delivery)."""
