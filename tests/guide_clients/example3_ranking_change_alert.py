import asyncio
import json
import websockets

async def alert_on_big_changes():
    uri = "ws://localhost:8000/ws/live-updates"
    
    async with websockets.connect(uri) as ws:
        async for message in ws:
            data = json.loads(message)
            
            if data["type"] == "ranking_change":
                rank_diff = abs(data["new_rank"] - data["old_rank"])
                
                if rank_diff >= 3:  # Big jump
                    print(f"🚨 BIG CHANGE: {data['repo_full_name']} "
                          f"moved {rank_diff} positions!")
                    # Send alert (email, Slack, etc.)

asyncio.run(alert_on_big_changes())
