async def handle_message(data: dict):
    """Central message handler."""
    message_type = data.get("type")
    
    handlers = {
        "connection": handle_connection,
        "heartbeat": handle_heartbeat,
        "new_event": handle_new_event,
        "summary_update": handle_summary_update,
        "ranking_change": handle_ranking_change,
        "trend_change": handle_trend_change,
        "metrics_update": handle_metrics_update,
        "system_status": handle_system_status,
        "error": handle_error,
        "pong": handle_pong,
    }
    
    handler = handlers.get(message_type)
    if handler:
        await handler(data)
    else:
        print(f"Unknown message type: {message_type}")

async def handle_new_event(data: dict):
    """Handle new event."""
    print(f"📨 New {data['event_type']}: {data['title']}")
    # Add to event feed
    # Send notification
    # Update counters

async def handle_ranking_change(data: dict):
    """Handle ranking change."""
    change_emoji = "⬆️" if data["change"] == "up" else "⬇️"
    print(f"{change_emoji} {data['repo_full_name']}: #{data['old_rank']} → #{data['new_rank']}")
    # Update leaderboard
    # Animate change
