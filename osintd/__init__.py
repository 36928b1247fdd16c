"""osintd: watches GitHub repository activity and pushes live intelligence to
WebSocket clients at ``/ws/live-updates``.

The package is laid out one concern per module; data flows one way:
sources (``demo``) → ``scorer`` → ``differ`` → ``hub`` → ``session`` senders.
``app`` wires them into one trio nursery; ``server`` owns the listening port.
"""

__version__ = "0.1.0"
