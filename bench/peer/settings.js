// Node-RED settings of bench.peer (bench/peer.py runs `node-red -s <this file> -u <temp dir> <flow>`).
// Everything the flow needs comes from the environment bench/peer.py sets:
//   PEER_NODE_MODULES  the cache folder's node_modules (node-red and pg, pinned in package.json)
//   PEER_MQTT_PORT, PEER_QOS, PEER_DATABASE_URL, PEER_BATCH_ROWS, PEER_FLUSH_MS, PEER_POOL, PEER_UI_PORT
// The editor and the HTTP nodes are off: the flow is fixed, and a bench wants no extra work.
const path = require("path");

module.exports = {
    uiPort: Number(process.env.PEER_UI_PORT || 1880),
    uiHost: "127.0.0.1",
    httpAdminRoot: false,
    httpNodeRoot: false,
    credentialSecret: false,
    flowFilePretty: true,
    // pg for the function node (`global.get("pg")`), as a Node-RED user exposes a library
    functionGlobalContext: {
        pg: require(path.join(process.env.PEER_NODE_MODULES, "pg")),
    },
    functionExternalModules: false,
    logging: {
        console: { level: "warn", metrics: false, audit: false },
    },
    // no update check, no telemetry: the bench must not depend on the network
    telemetry: { enabled: false },
    diagnostics: { enabled: false },
    editorTheme: { tours: false },
};
