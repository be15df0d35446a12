"""Whether W&B can reach a server: the suite works the same online and offline."""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse

OFFLINE_MODES = {"offline", "disabled", "dryrun"}


def wandb_online() -> bool:
    """True when W&B credentials exist and ``WANDB_MODE`` does not ask for offline."""
    if os.environ.get("WANDB_MODE", "").lower() in OFFLINE_MODES:
        return False
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False
