"""What a plan decides per package, and what a build run did: typed once for every layer."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["ACTIONS", "OUTCOMES", "Action", "Done"]

#: What the plan decides for a package.
Action = Literal["reuse", "fetch", "build", "pending"]
#: What a build run did with it.
Done = Literal["reused", "fetched", "built", "failed"]

#: In the order counts are shown.
ACTIONS: tuple[Action, ...] = get_args(Action)
OUTCOMES: tuple[Done, ...] = get_args(Done)
