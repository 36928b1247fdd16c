class LiveUpdatesClient {
  constructor(url = 'ws://localhost:8000/ws/live-updates') {
    this.url = url;
    this.ws = null;
    this.handlers = {};
    this.clientId = null;
    this.reconnectAttempts = 0;
    this.maxReconnectAttempts = 5;
  }

  connect() {
    this.ws = new WebSocket(this.url);

    this.ws.onopen = () => {
      console.log('✅ Connected to live updates');
      this.reconnectAttempts = 0;
    };

    this.ws.onmessage = (event) => {
      const data = JSON.parse(event.data);
      const type = data.type;

      // Store client ID
      if (type === 'connection') {
        this.clientId = data.client_id;
      }

      // Call registered handler
      if (this.handlers[type]) {
        this.handlers[type](data);
      }
    };

    this.ws.onerror = (error) => {
      console.error('WebSocket error:', error);
    };

    this.ws.onclose = () => {
      console.log('❌ Connection closed');
      this.attemptReconnect();
    };
  }

  on(type, handler) {
    this.handlers[type] = handler;
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
    }
  }

  ping() {
    this.send({ type: 'ping' });
  }

  attemptReconnect() {
    if (this.reconnectAttempts < this.maxReconnectAttempts) {
      this.reconnectAttempts++;
      const delay = Math.min(1000 * Math.pow(2, this.reconnectAttempts), 30000);
      console.log(`Reconnecting in ${delay}ms...`);
      setTimeout(() => this.connect(), delay);
    }
  }

  close() {
    if (this.ws) {
      this.ws.close();
    }
  }
}

// Usage
const client = new LiveUpdatesClient();

client.on('new_event', (data) => {
  console.log(`📨 New ${data.event_type}: ${data.title}`);
  // Update UI
  addEventToFeed(data);
});

client.on('ranking_change', (data) => {
  console.log(`📊 ${data.repo_full_name}: ${data.old_rank} → ${data.new_rank}`);
  // Update leaderboard
  updateRanking(data);
});

client.on('summary_update', (data) => {
  console.log(`📝 Summary updated: ${data.repo_full_name}`);
  // Refresh repository card
  refreshRepoCard(data.repo_full_name);
});

client.connect();
