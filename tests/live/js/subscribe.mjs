// Subscribes with the reference graphql-ws client and prints each result as one JSON line.
// Usage: QAAS_TOKEN=... node subscribe.mjs WS_URL QUERY VARIABLES_JSON STOP_STATUS
// Exits 0 once a node with status STOP_STATUS arrives, 1 on error or completion before that.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, query, variables, stopStatus] = process.argv.slice(2);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  retryAttempts: 0,
  connectionParams: { Authorization: `Bearer ${process.env.QAAS_TOKEN}` },
});

const timer = setTimeout(() => {
  console.error("timed out");
  process.exit(1);
}, 30000);

client.subscribe(
  { query, variables: JSON.parse(variables) },
  {
    next: (result) => {
      console.log(JSON.stringify(result));
      if (result.data?.nodeStatusChanged?.status === stopStatus) {
        clearTimeout(timer);
        client.dispose();
        process.exit(0);
      }
    },
    error: (error) => {
      console.error("error", JSON.stringify(error, Object.getOwnPropertyNames(error)));
      process.exit(1);
    },
    complete: () => {
      console.error("completed before", stopStatus);
      process.exit(1);
    },
  },
);
