import asyncio
import json
import websockets

async def connect_to_updates():
    uri = "ws://localhost:8000/ws/live-updates"
    
    async with websockets.connect(uri) as websocket:
        print("✅ Connected to live updates")
        
        # Receive messages
        async for message in websocket:
            data = json.loads(message)
            message_type = data.get("type")
            
            if message_type == "connection":
                print(f"Connected with ID: {data['client_id']}")
            
            elif message_type == "heartbeat":
                print("💓 Heartbeat")
            
            elif message_type == "new_event":
                print(f"📨 New {data['event_type']}: {data['title']}")
            
            elif message_type == "ranking_change":
                print(f"📊 {data['repo_full_name']}: {data['old_rank']} → {data['new_rank']}")
            
            elif message_type == "summary_update":
                print(f"📝 Summary updated: {data['repo_full_name']}")

# Run
asyncio.run(connect_to_updates())
