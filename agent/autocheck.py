"""Automatic updates, the device side: which apps, which channel, and the jittered check.

The agent does not poll the repository: its inventory (sent on connect, after every install, and every
`[auto] check_interval` s +/- `check_jitter`, only while IDLE and connected) carries its channel and the
apps it updates automatically: the managed apps minus those opted out or pinned. The cloud answers an
inventory with a job for the newest release of each such app that is newer than the installed version
(a delta from it when one exists); the job goes through the same checks, download, verification and
install as any other (docs/agent.md, "Automatic updates"). One small message per check.
Mixed into agent.runtime.Agent.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from otaformat import messages

from . import AGENT_VERSION
from .machine import State

if TYPE_CHECKING:
    from .runtime import Agent


class AutoCheck:
    def inventory_message(self: Agent) -> messages.Inventory:
        channel = self.cfg.channel
        auto = tuple(a for a in self.cfg.managed_apps if a not in self.cfg.opt_out and a not in self.cfg.pins)
        return messages.Inventory(AGENT_VERSION, self.cfg.model, dict(self.store.data["apps"]), channel,
                                  auto if channel else ())

    def schedule_check(self: Agent) -> None:
        spread = self.cfg.check_interval * self.cfg.check_jitter
        self.next_check = self.clock() + self.cfg.check_interval + random.uniform(-spread, spread)

    def auto_check(self: Agent) -> None:
        """Publish the inventory when the jittered interval has passed (IDLE and connected only)."""
        if self.cfg.channel is None or self.state != State.IDLE or not self.transport.connected:
            return
        if self.next_check is None:
            self.schedule_check()
        elif self.clock() >= self.next_check:
            self.publish_inventory()
            self.schedule_check()
