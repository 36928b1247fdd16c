"""Settings: every knob of the daemon in one frozen attrs class.

Owns: the settings' names, defaults and validation.
Must not: parse the command line (``cli``) or act on a setting.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    demo: bool = True
    demo_rate: float = 4.0
    demo_seed: int | None = None
    heartbeat_interval: float = 30.0
    metrics_interval: float = 5.0
    client_queue: int = 1024
    max_clients: int = 10_000
    allowed_origins: tuple[str, ...] = ()
    log_level: str = "info"
    #: Seconds between scoreboards: ranking, trend and summary announcements are coalesced to this rate.
    announce_interval: float = 1.0
    #: Minimum seconds between two summary_update messages of one repository.
    summary_interval: float = 30.0
    replay_capacity: int = 10_000
    event_queue: int = 4096
    ping_interval: float = 20.0
    ping_timeout: float = 10.0
    send_timeout: float = 10.0
    handshake_timeout: float = 10.0
    shutdown_grace: float = 3.0
