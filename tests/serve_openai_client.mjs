// The official `openai` npm package against nibble serve: a chat completion, a
// streamed one, the models list, and an error surfacing as the package's
// BadRequestError. Usage: node serve_openai_client.mjs BASE_URL (the package
// is found through NODE_PATH or a node_modules folder above this file's copy).
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "test-key", maxRetries: 0 });
const fail = (message) => {
    console.error("FAIL: " + message);
    process.exit(1);
};

const models = await client.models.list();
const ids = [];
for await (const m of models) ids.push(m.id);
if (ids.length !== 1 || ids[0] !== "stories") fail("models: " + JSON.stringify(ids));

const messages = [{ role: "user", content: "Once upon a time" }];
const answer = await client.chat.completions.create({
    model: "stories", messages, max_tokens: 24, temperature: 0,
});
const text = answer.choices[0].message.content;
if (answer.object !== "chat.completion" || typeof text !== "string" || text.length === 0) {
    fail("chat: " + JSON.stringify(answer));
}
if (answer.usage.completion_tokens < 1 || answer.usage.completion_tokens > 24) fail("usage");

const stream = await client.chat.completions.create({
    model: "stories", messages, max_tokens: 24, temperature: 0, stream: true,
});
let streamed = "";
let finish = null;
let chunks = 0;
for await (const chunk of stream) {
    chunks += 1;
    const choice = chunk.choices[0];
    if (choice?.delta?.content) streamed += choice.delta.content;
    if (choice?.finish_reason) finish = choice.finish_reason;
}
if (streamed !== text) fail(`stream ${JSON.stringify(streamed)} != ${JSON.stringify(text)}`);
if (finish !== "length" && finish !== "stop") fail("finish_reason " + finish);
if (chunks < 2) fail("one chunk only");

try {
    await client.chat.completions.create({ model: "stories", messages, n: 3 });
    fail("n: 3 was accepted");
} catch (e) {
    if (!(e instanceof OpenAI.BadRequestError) || e.param !== "n") fail("n: 3 gave " + e);
}
console.log(`PASS: ${chunks} chunks, ${JSON.stringify(text.slice(0, 40))}...`);
