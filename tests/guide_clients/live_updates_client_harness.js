// Runs the guide's browser LiveUpdatesClient (live_updates_client.js, kept
// byte-identical to the guide except for the URL, which the test substitutes
// in a copy) under Node.js.
//
// Usage: node live_updates_client_harness.js SNIPPET
//
// Node 20 has no global WebSocket, so the `ws` package from tests/node stands
// in for the browser's.  The snippet's usage calls three UI functions that the
// guide leaves to the page; here each one prints a `🖥 ` line so the test can
// see that it was called, and with what.  The snippet is then run as a classic
// browser script would be: top-level `class` and `const` in the global scope.
'use strict';

const fs = require('fs');
const path = require('path');
const vm = require('vm');

const nodeDir = path.join(__dirname, '..', 'node');
globalThis.WebSocket = require(require.resolve('ws', { paths: [nodeDir] }));

globalThis.addEventToFeed = (data) => {
  console.log(`🖥 addEventToFeed ${data.event_id}`);
};
globalThis.updateRanking = (data) => {
  console.log(`🖥 updateRanking ${data.repo_full_name} #${data.new_rank}`);
};
globalThis.refreshRepoCard = (repoFullName) => {
  console.log(`🖥 refreshRepoCard ${repoFullName}`);
};

const snippet = process.argv[2];
vm.runInThisContext(fs.readFileSync(snippet, 'utf8'), { filename: snippet });
