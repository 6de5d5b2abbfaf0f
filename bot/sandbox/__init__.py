"""``deskbot sandbox``: the real bot against the local Bot API emulator (:mod:`bot.emulator`),
shown in a browser page, with the supervisors' web console (:mod:`bot.console`) beside it.

- :mod:`bot.sandbox.run` starts everything (emulator, bot, page server) and stops it again;
- :mod:`bot.sandbox.page` serves the page and its small JSON/server-sent-events API;
- :mod:`bot.sandbox.render` turns the emulator's messages into what the page draws.

Everything listens on 127.0.0.1 only; nothing talks to Telegram.
"""
