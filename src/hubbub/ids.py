"""Identifiers: a prefix, the creation time, and 64 random bits.

Time-ordered (they sort by creation to the millisecond) and cheap: the random
bits come from a generator seeded once from the OS, not a system call per id.
Ids are names, not secrets; access is checked on every use.
"""

from __future__ import annotations

import os
import random
import time

_random = random.Random(os.urandom(32))


def new_id(prefix: str) -> str:
    return f"{prefix}_{int(time.time() * 1000):011x}{_random.getrandbits(64):016x}"
