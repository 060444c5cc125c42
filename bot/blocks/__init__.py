"""Slack Block Kit, built in one place: pure functions from view data to blocks.

Every surface releasebot shows in Slack is built here: the release message
(`bot.blocks.release`), the slash command's answers (`bot.blocks.commands`), App Home
(`bot.blocks.home`), the DORA message and digest (`bot.blocks.dora`) and the modals
(`bot.blocks.modals`). The shared pieces (mrkdwn escaping, links, mentions, state labels)
are in `bot.blocks.mrkdwn`, the block constructors in `bot.blocks.kit`. Nothing here
reads the database or talks to Slack: view dataclasses in, lists of dicts out.
"""
