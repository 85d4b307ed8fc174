// Load generator for OpenAI-compatible servers (nibble serve, llama-server):
// N clients, each sending streamed completions back to back for T seconds.
// Prints requests/s, generated tokens/s, p50/p99 time to first token and
// inter-token latency, and errors. Only Node's standard library.
//   node scripts/load.mjs --url http://127.0.0.1:8080 --clients 16 --seconds 60
//        [--prompt-tokens 32] [--max-tokens 64] [--system-tokens 0] [--chat]
import http from "node:http";

const args = Object.fromEntries(
    process.argv.slice(2).reduce((pairs, a, i, all) => {
        if (a.startsWith("--")) pairs.push([a.slice(2), all[i + 1]?.startsWith("--") ? "1" : all[i + 1] ?? "1"]);
        return pairs;
    }, []));
const url = new URL(args.url ?? "http://127.0.0.1:8080");
const clients = Number(args.clients ?? 16);
const seconds = Number(args.seconds ?? 30);
const promptTokens = Number(args["prompt-tokens"] ?? 32);
const maxTokens = Number(args["max-tokens"] ?? 64);
const systemTokens = Number(args["system-tokens"] ?? 0);
const chat = args.chat !== undefined;
const apiKey = args["api-key"] ?? process.env.OPENAI_API_KEY ?? "";

// Words that are one token each in LLaMA vocabularies (roughly: " the" etc.).
const words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "big", "red",
               "sun", "day", "was", "in", "it", "he", "she", "we", "go", "up", "at", "by"];
const text = (n, seed) => Array.from({ length: n }, (_, i) => words[(i * 7 + seed * 13) % words.length]).join(" ");
const system = systemTokens > 0 ? text(systemTokens, 0) + ".\n" : "";

const ttft = [], itl = [];
let requests = 0, tokens = 0, errors = 0;
const errorKinds = new Map();
const agent = new http.Agent({ keepAlive: true, maxSockets: clients });

function once(client, n) {
    const user = text(promptTokens, client * 1000 + n);
    const body = JSON.stringify(chat
        ? { model: "m", messages: [...(system ? [{ role: "system", content: system }] : []), { role: "user", content: user }],
            max_tokens: maxTokens, stream: true, temperature: 0, ignore_eos: true }
        : { model: "m", prompt: system + user, max_tokens: maxTokens, stream: true, temperature: 0,
            ignore_eos: true, n_predict: maxTokens });
    return new Promise((resolve) => {
        const start = performance.now();
        let last = 0, count = 0, buffer = "", usageTokens = 0;
        const req = http.request(url, {
            method: "POST", agent, path: chat ? "/v1/chat/completions" : "/v1/completions",
            headers: { "Content-Type": "application/json", ...(apiKey ? { Authorization: `Bearer ${apiKey}` } : {}) },
        }, (res) => {
            if (res.statusCode !== 200) {
                errors++; errorKinds.set(res.statusCode, (errorKinds.get(res.statusCode) ?? 0) + 1);
                res.resume(); res.on("end", resolve); return;
            }
            res.setEncoding("utf8");
            res.on("data", (data) => {
                buffer += data;
                let at;
                while ((at = buffer.indexOf("\n\n")) >= 0) {
                    const event = buffer.slice(0, at); buffer = buffer.slice(at + 2);
                    if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
                    const chunk = JSON.parse(event.slice(6));
                    if (chunk.usage?.completion_tokens) usageTokens = chunk.usage.completion_tokens;
                    const c = chunk.choices?.[0];
                    const piece = c?.text ?? c?.delta?.content ?? c?.content ?? "";
                    if (piece === "" ) continue;
                    const now = performance.now();
                    if (count === 0) ttft.push(now - start); else itl.push(now - last);
                    last = now; count++;
                }
            });
            // Tokens: the usage of the last chunk when the server sends it, else the pieces.
            res.on("end", () => { requests++; tokens += usageTokens || count; resolve(); });
        });
        req.on("error", (e) => { errors++; errorKinds.set(e.code, (errorKinds.get(e.code) ?? 0) + 1); resolve(); });
        req.end(body);
    });
}

const deadline = performance.now() + seconds * 1000;
const began = performance.now();
await Promise.all(Array.from({ length: clients }, async (_, client) => {
    for (let n = 0; performance.now() < deadline; n++) await once(client, n);
}));
const elapsed = (performance.now() - began) / 1000;
const pct = (a, p) => { if (!a.length) return NaN; const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; };
console.log(`clients ${clients}, ${elapsed.toFixed(1)} s, prompt ~${promptTokens}+${systemTokens} tokens, max_tokens ${maxTokens}${chat ? ", chat" : ""}`);
console.log(`requests ${requests} (${(requests / elapsed).toFixed(2)}/s), generated tokens ${tokens} (${(tokens / elapsed).toFixed(1)}/s), errors ${errors}${errorKinds.size ? " " + JSON.stringify(Object.fromEntries(errorKinds)) : ""}`);
console.log(`TTFT ms p50 ${pct(ttft, 50).toFixed(0)} p99 ${pct(ttft, 99).toFixed(0)} | inter-token ms p50 ${pct(itl, 50).toFixed(1)} p99 ${pct(itl, 99).toFixed(1)}`);
agent.destroy();
