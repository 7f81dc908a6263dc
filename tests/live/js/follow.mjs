// Subscribes with the reference graphql-ws client and prints each result as one JSON line,
// then "complete" when the server completes the subscription.
// Usage: QAAS_TOKEN=... node follow.mjs WS_URL QUERY VARIABLES_JSON
// Exits 0 on completion, 1 on an error or after 60 s.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, query, variables] = process.argv.slice(2);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  retryAttempts: 0,
  connectionParams: { Authorization: `Bearer ${process.env.QAAS_TOKEN}` },
});

const timer = setTimeout(() => {
  console.error("timed out");
  process.exit(1);
}, 60000);

client.subscribe(
  { query, variables: JSON.parse(variables) },
  {
    next: (result) => console.log(JSON.stringify(result)),
    error: (error) => {
      console.error("error", JSON.stringify(error, Object.getOwnPropertyNames(error)));
      process.exit(1);
    },
    complete: () => {
      console.log("complete");
      clearTimeout(timer);
      client.dispose();
      process.exit(0);
    },
  },
);
